package gateway

import (
	"errors"
	"fmt"
	"testing"

	"github.com/segue-rtc/segue/sip"
)

// TestEndOfPBXFaults: a PBX that never answers the INVITE and one that
// lost an answered call's dialog each end the call with a cause of their
// own (the metric label) and words for both sides.
func TestEndOfPBXFaults(t *testing.T) {
	for _, tc := range []struct {
		answered           bool
		cause              error
		state, code, words string
	}{
		{false, fmt.Errorf("invite sip:600@pbx: %w after 10s", sip.ErrUnreachable), callFailed, "unreachable", "The phone line did not answer"},
		{true, sip.ErrDialogLost, callEnded, "dialog_lost", "The phone system lost the call"},
		{true, sip.ErrSessionExpired, callEnded, "ended", "The call ended"},
		{false, errors.New("sip: something else"), callFailed, "failed", "The call could not be connected"},
	} {
		state, _, code, words := endOf(tc.answered, tc.cause)
		if state != tc.state || code != tc.code || words != tc.words {
			t.Errorf("endOf(%v, %v) = %s %s %q, want %s %s %q", tc.answered, tc.cause, state, code, words, tc.state, tc.code, tc.words)
		}
	}
}
