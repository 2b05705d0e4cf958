package sip

import (
	"net/netip"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// dialogGuard holds what RFC 3261 §12.2.2 checks on a request inside a
// dialog before it is acted on: the dialog's tags and the far end's last
// CSeq number.
type dialogGuard struct {
	localTag, remoteTag string
	remoteCSeq          uint32
	haveCSeq            bool // RFC 3261 §12.1.2: a UAC's remote sequence number starts empty
}

// Verdicts of dialogGuard.admit besides a response code.
const (
	admitOK   = 0
	admitDrop = -1 // an ACK that does not belong: dropped, since ACKs get no response
)

// serverGuard is the guard of a dialog we answered: our tag is in the To
// header ReadInvite prepared, theirs in the INVITE's From, and the
// INVITE's CSeq starts their sequence.
func serverGuard(ds *sipgo.DialogServerSession) dialogGuard {
	var g dialogGuard
	req := ds.InviteRequest
	if to := req.To(); to != nil {
		g.localTag, _ = to.Params.Get("tag")
	}
	if from := req.From(); from != nil {
		g.remoteTag, _ = from.Params.Get("tag")
	}
	if cs := req.CSeq(); cs != nil {
		g.remoteCSeq, g.haveCSeq = cs.SeqNo, true
	}
	return g
}

// clientGuard is the guard of a dialog we placed: our tag is in the
// INVITE's From, theirs in the 2xx's To; their sequence starts with
// their first request.
func clientGuard(dc *sipgo.DialogClientSession) dialogGuard {
	var g dialogGuard
	if from := dc.InviteRequest.From(); from != nil {
		g.localTag, _ = from.Params.Get("tag")
	}
	if dc.InviteResponse != nil {
		if to := dc.InviteResponse.To(); to != nil {
			g.remoteTag, _ = to.Params.Get("tag")
		}
	}
	return g
}

// admit checks req against the dialog (RFC 3261 §12.2.2): 481 when its
// From tag is not the far end's or its To tag not ours, 500 when its
// CSeq is lower than the far end's last one; admitOK (recording the
// CSeq) when it belongs. An ACK carries its INVITE's CSeq: it is checked,
// not recorded, and dropped when it does not belong.
func (g *dialogGuard) admit(req *sipmsg.Request) int {
	var fromTag, toTag string
	if f := req.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
	}
	if t := req.To(); t != nil {
		toTag, _ = t.Params.Get("tag")
	}
	n := req.CSeq().SeqNo
	if req.IsAck() {
		if fromTag != g.remoteTag || toTag != g.localTag || g.haveCSeq && n < g.remoteCSeq {
			return admitDrop
		}
		return admitOK
	}
	if fromTag != g.remoteTag || toTag != g.localTag || g.localTag == "" {
		return 481
	}
	if g.haveCSeq && n < g.remoteCSeq {
		return 500
	}
	g.remoteCSeq, g.haveCSeq = n, true
	return admitOK
}

// acceptsFrom reports whether a request inside this call's dialog may
// come from ip: the call's trunk's allow_inbound_from or host, or, for a
// call set up with digest credentials (inbound_auth), the address the
// INVITE came from. Sources of other trunks are not the call's.
func (c *Call) acceptsFrom(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	return c.trunk.allows(ip) || c.trunk.isHost(ip) || c.authSrc.IsValid() && ip == c.authSrc
}
