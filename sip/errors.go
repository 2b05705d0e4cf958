package sip

import (
	"errors"
	"fmt"
	"strconv"
)

var (
	// ErrClosed is the cause of a call or server that was closed locally.
	ErrClosed = errors.New("sip: closed")
	// ErrNoCommonCodec is returned when an offer or answer shares no codec with us.
	ErrNoCommonCodec = errors.New("sip: no common codec")
	// ErrBadSDP is returned for a session description we cannot use.
	ErrBadSDP = errors.New("sip: malformed sdp")
	// ErrUnknownTrunk is returned by Dial for a trunk name not in the config.
	ErrUnknownTrunk = errors.New("sip: unknown trunk")
	// ErrLimit is returned when a per-trunk or global call limit is reached.
	ErrLimit = errors.New("sip: call limit reached")
	// ErrBusy matches a StatusError with 486 Busy Here or 600 Busy Everywhere.
	ErrBusy = errors.New("sip: busy")
	// ErrNoAnswer matches a StatusError with 408 or 480, or a ring timeout.
	ErrNoAnswer = errors.New("sip: no answer")
	// ErrUnavailable matches a StatusError with 404, 410, 484, 502, 503 or 504.
	ErrUnavailable = errors.New("sip: unavailable")
	// ErrRejected matches a StatusError with 403, 603 or any other final failure.
	ErrRejected = errors.New("sip: rejected")
	// ErrCancelled is the cause of an outbound call cancelled before answer.
	ErrCancelled = errors.New("sip: cancelled")
	// ErrRemoteHangup is the cause of a call ended by BYE from the far end.
	ErrRemoteHangup = errors.New("sip: remote hangup")
	// ErrSessionExpired is the cause of a call whose RFC 4028 session timer ran out.
	ErrSessionExpired = errors.New("sip: session expired")
	// ErrUnreachable is returned by Dial when the INVITE got no response
	// at all within the trunk's invite_timeout, or could not be sent: the
	// PBX is down or unreachable.
	ErrUnreachable = errors.New("sip: no response from the far end")
	// ErrDialogLost is the cause of a call whose far end answered an
	// in-dialog request of ours (a session refresh) with 481: it no
	// longer knows the dialog (RFC 3261 §12.2.1.2), typically after a
	// restart.
	ErrDialogLost = errors.New("sip: the far end lost the dialog")
	// ErrBadDTMF is returned by SendDTMF for a digit outside 0-9, *, #, A-D.
	ErrBadDTMF = errors.New("sip: invalid dtmf digit")
	// ErrNoPorts is returned when the RTP port range is exhausted.
	ErrNoPorts = errors.New("sip: no free rtp port")
	// ErrRedirectLoop is returned when 3xx responses lead outside the trunk or loop.
	ErrRedirectLoop = errors.New("sip: redirect not followed")
	// ErrTransferRefused is returned for a REFER whose target the trunk's
	// transfer rules (transfer_targets, or the default) do not allow.
	ErrTransferRefused = errors.New("sip: transfer refused")
	// ErrHeader is returned by Dial for a caller header that is not
	// allowed or could inject other headers (DialOptions.Headers).
	ErrHeader = errors.New("sip: invalid header")
)

// StatusError is a final non-2xx response to a request we sent.
// Use errors.Is with ErrBusy, ErrNoAnswer, ErrUnavailable or ErrRejected
// to branch on the class of failure.
type StatusError struct {
	Code   int
	Reason string
	// RetryAfter is the Retry-After header value in seconds, or 0.
	RetryAfter int
	// Contact is where a 3xx redirect sends the caller (RFC 3261
	// §21.3.3, §8.1.3.4): a SIP URI, or "" for none.
	Contact string
}

func (e *StatusError) Error() string {
	return "sip: " + strconv.Itoa(e.Code) + " " + e.Reason
}

// Is reports whether the status belongs to the class named by target.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrBusy:
		return e.Code == 486 || e.Code == 600
	case ErrNoAnswer:
		return e.Code == 408 || e.Code == 480
	case ErrUnavailable:
		switch e.Code {
		case 404, 410, 484, 502, 503, 504:
			return true
		}
	case ErrRejected:
		switch e.Code {
		case 486, 600, 408, 480, 404, 410, 484, 502, 503, 504:
			return false
		}
		return e.Code >= 400
	}
	return false
}

// HangupError is the cause of a call ended by the far end, carrying the
// Reason header (RFC 3326) when one was sent.
type HangupError struct {
	Method string // BYE or CANCEL
	Reason string // Reason header value, may be empty
}

func (e *HangupError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("sip: remote hangup (%s)", e.Method)
	}
	return fmt.Sprintf("sip: remote hangup (%s; %s)", e.Method, e.Reason)
}

// Is makes a HangupError match ErrRemoteHangup.
func (e *HangupError) Is(target error) bool { return target == ErrRemoteHangup }

// ErrNoTelephoneEvent is returned by SendDTMF when the far end did not
// negotiate telephone-event (RFC 4733).
var ErrNoTelephoneEvent = errors.New("sip: far end has no telephone-event")

// ErrSRTP is returned when SRTP is required but the far end offers or
// answers no usable SDES key, or offers SRTP where we do not use it.
var ErrSRTP = errors.New("sip: srtp negotiation failed")

// ErrBadDialog is returned by EndDialog for a Dialog that lacks its id
// (Call-ID and both tags) or holds an unparsable URI.
var ErrBadDialog = errors.New("sip: incomplete dialog")
