package sip

import (
	"context"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// byeCSeqGap is how far past the last CSeq recorded for a dialog the BYE
// of EndDialog jumps: the call may have sent refreshes (UPDATE) after the
// dialog was recorded, and RFC 3261 §12.2.2 lets a UAS accept a CSeq
// higher than the last by more than one, never a lower one.
const byeCSeqGap = 1000

// Dialog is what it takes to end a call's dialog from outside the call,
// for instance by a gateway restarted after a crash (RFC 3261 §12): the
// dialog id (Call-ID and both tags), both URIs, the remote target, the
// route set and our last CSeq, plus the trunk. A BYE built from it goes
// where the call's own would: to the first hop of the route set, or to
// the remote target when the route set is empty (§12.2.1.1), never to
// the address the INVITE's answer came from, which is a proxy's when one
// that does not record-route sits between (Kamailio's dispatcher).
type Dialog struct {
	Trunk        string   `json:"trunk"`
	Transport    string   `json:"transport"`
	CallID       string   `json:"call_id"`
	LocalURI     string   `json:"local_uri"`
	LocalTag     string   `json:"local_tag"`
	RemoteURI    string   `json:"remote_uri"`
	RemoteTag    string   `json:"remote_tag"`
	RemoteTarget string   `json:"remote_target"`
	RouteSet     []string `json:"route_set,omitempty"`
	CSeq         uint32   `json:"cseq"`
}

// Dialog returns the call's current dialog (it changes after a transfer).
func (c *Call) Dialog() Dialog {
	dlg := c.dialog()
	target := c.remoteTargetOf(dlg)
	d := Dialog{Trunk: c.trunk.cfg.Name, Transport: c.trunk.transport, RemoteTarget: target.String()}
	switch s := dlg.(type) {
	case *sipgo.DialogClientSession:
		// RFC 3261 §12.1.2: our From, their To, the route set from the
		// 2xx's Record-Route in reverse order.
		req, res := s.InviteRequest, s.InviteResponse
		d.CallID, d.CSeq = req.CallID().Value(), s.CSEQ()
		d.LocalURI, d.LocalTag = req.From().Address.String(), tagOf(req.From().Params)
		if res != nil {
			d.RemoteURI, d.RemoteTag = res.To().Address.String(), tagOf(res.To().Params)
			rr := res.GetHeaders("Record-Route")
			for i := len(rr) - 1; i >= 0; i-- {
				d.RouteSet = append(d.RouteSet, rr[i].Value())
			}
		}
	case *sipgo.DialogServerSession:
		// RFC 3261 §12.1.1: our To (tagged in our answer), their From,
		// the route set from the INVITE's Record-Route in order.
		req, res := s.InviteRequest, s.InviteResponse
		d.CallID, d.CSeq = req.CallID().Value(), s.CSEQ()
		d.RemoteURI, d.RemoteTag = req.From().Address.String(), tagOf(req.From().Params)
		if res != nil {
			d.LocalURI, d.LocalTag = res.To().Address.String(), tagOf(res.To().Params)
		}
		for _, h := range req.GetHeaders("Record-Route") {
			d.RouteSet = append(d.RouteSet, h.Value())
		}
	}
	return d
}

func tagOf(p sipmsg.HeaderParams) string {
	if p == nil {
		return ""
	}
	v, _ := p.Get("tag")
	return v
}

// EndDialog sends BYE in a dialog that no Call holds any more (a call
// that was up when the gateway stopped without hanging up). It returns
// nil when the far end confirms (2xx) or no longer knows the dialog
// (481, RFC 3261 §15.1.2), and a *StatusError for any other answer.
func (s *Server) EndDialog(ctx context.Context, d Dialog) error {
	select {
	case <-s.ready:
	default:
		return fmt.Errorf("sip: end dialog before Run: %w", ErrClosed)
	}
	if _, ok := s.trunkTable().byName[d.Trunk]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTrunk, d.Trunk)
	}
	req, err := byeFor(d)
	if err != nil {
		return err
	}
	transport := d.Transport
	if transport == "" {
		transport = "udp"
	}
	cli := s.client(transport)
	if cli == nil {
		return fmt.Errorf("sip: end dialog %s: no %s client", d.CallID, transport)
	}
	res, err := cli.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("sip: bye %s: %w", d.CallID, err)
	}
	if res.IsSuccess() || res.StatusCode == 481 {
		return nil
	}
	return fmt.Errorf("sip: bye %s: %w", d.CallID, &StatusError{Code: res.StatusCode, Reason: res.Reason})
}

// byeFor builds the BYE for d (RFC 3261 §12.2.1.1): to the remote
// target, through the route set, with a CSeq past the last one sent.
func byeFor(d Dialog) (*sipmsg.Request, error) {
	if d.CallID == "" || d.LocalTag == "" || d.RemoteTag == "" {
		return nil, fmt.Errorf("sip: end dialog %q: %w", d.CallID, ErrBadDialog)
	}
	var target, local, remote sipmsg.Uri
	for _, u := range []struct {
		s   string
		dst *sipmsg.Uri
	}{{d.RemoteTarget, &target}, {d.LocalURI, &local}, {d.RemoteURI, &remote}} {
		if err := sipmsg.ParseUri(u.s, u.dst); err != nil {
			return nil, fmt.Errorf("sip: end dialog %s: %w: %q", d.CallID, ErrBadDialog, u.s)
		}
	}
	req := sipmsg.NewRequest(sipmsg.BYE, target)
	req.SetTransport(strings.ToUpper(d.Transport))
	from := &sipmsg.FromHeader{Address: local, Params: sipmsg.NewParams()}
	from.Params.Add("tag", d.LocalTag)
	to := &sipmsg.ToHeader{Address: remote, Params: sipmsg.NewParams()}
	to.Params.Add("tag", d.RemoteTag)
	cid := sipmsg.CallIDHeader(d.CallID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: d.CSeq + byeCSeqGap, MethodName: sipmsg.BYE})
	for _, r := range d.RouteSet {
		req.AppendHeader(sipmsg.NewHeader("Route", r))
	}
	return req, nil
}
