package sip

import (
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
)

func TestDialogGuard(t *testing.T) {
	req := func(method sipmsg.RequestMethod, fromTag, toTag string, cseq uint32) *sipmsg.Request {
		r := sipmsg.NewRequest(method, sipmsg.Uri{Scheme: "sip", Host: "192.0.2.20"})
		from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", Host: "pbx"}, Params: sipmsg.NewParams()}
		if fromTag != "" {
			from.Params.Add("tag", fromTag)
		}
		to := &sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: "sip", Host: "gw"}, Params: sipmsg.NewParams()}
		if toTag != "" {
			to.Params.Add("tag", toTag)
		}
		r.AppendHeader(from)
		r.AppendHeader(to)
		r.AppendHeader(&sipmsg.CSeqHeader{SeqNo: cseq, MethodName: method})
		return r
	}
	t.Run("dialog we answered", func(t *testing.T) {
		g := dialogGuard{localTag: "ours", remoteTag: "theirs", remoteCSeq: 5, haveCSeq: true}
		for _, step := range []struct {
			req  *sipmsg.Request
			want int
		}{
			{req(sipmsg.ACK, "theirs", "ours", 5), admitOK},
			{req(sipmsg.INFO, "other", "ours", 6), 481},
			{req(sipmsg.INFO, "theirs", "other", 6), 481},
			{req(sipmsg.BYE, "theirs", "", 6), 481},
			{req(sipmsg.REFER, "", "ours", 6), 481},
			{req(sipmsg.ACK, "other", "ours", 5), admitDrop},
			{req(sipmsg.INFO, "theirs", "ours", 4), 500}, // lower than the INVITE's
			{req(sipmsg.INFO, "theirs", "ours", 7), admitOK},
			{req(sipmsg.REFER, "theirs", "ours", 6), 500}, // lower than the INFO's
			{req(sipmsg.INVITE, "theirs", "ours", 8), admitOK},
			{req(sipmsg.ACK, "theirs", "ours", 8), admitOK},
			{req(sipmsg.ACK, "theirs", "ours", 7), admitDrop},
			{req(sipmsg.BYE, "theirs", "ours", 9), admitOK},
		} {
			if got := g.admit(step.req); got != step.want {
				t.Errorf("%s cseq %d (%s / %s): %d, want %d", step.req.Method, step.req.CSeq().SeqNo, step.req.From().Value(), step.req.To().Value(), got, step.want)
			}
		}
	})
	t.Run("dialog we placed", func(t *testing.T) {
		// The far end's CSeq space is its own: its first request may be lower than our INVITE's.
		g := dialogGuard{localTag: "ours", remoteTag: "theirs"}
		if got := g.admit(req(sipmsg.INVITE, "theirs", "ours", 1)); got != admitOK {
			t.Fatalf("first request: %d", got)
		}
		if got := g.admit(req(sipmsg.UPDATE, "theirs", "ours", 0)); got != 500 {
			t.Fatalf("lower CSeq: %d", got)
		}
	})
}
