package webrtc

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// The efforts of the Opus encoder toward the browser with
// opus_complexity: auto. Complexity 1 costs about half of 5 and sounds no
// worse on speech that came through G.711 (transcode's
// TestOpusCheapEffortQuality), but codes no in-band FEC; so it runs while
// the browser reports no loss, and 5 with FEC once it reports some.
var (
	cheapOpusEffort   = transcode.OpusEffort{Complexity: 1}
	qualityOpusEffort = transcode.OpusEffort{Complexity: DefaultOpusComplexity, FEC: true, PacketLoss: fixedOpusLoss}
)

const (
	// fixedOpusLoss is the loss in percent the encoder's FEC is tuned for
	// at a fixed opus_complexity.
	fixedOpusLoss = 5
	// fecLossThreshold is the loss in a receiver report, in percent,
	// from which the adaptive encoder turns FEC on.
	fecLossThreshold = 1
	// minFECLoss and maxFECLoss bound the expected loss given to the
	// encoder in FEC mode: the reported loss, rounded up, within them.
	minFECLoss, maxFECLoss = 5, 30
	// fecHold is how long reports must show no loss before the encoder
	// goes back to the cheap effort: a browser reports about once a
	// second to every five, and loss comes in bursts.
	fecHold = 10 * time.Second
)

// OpusComplexityAuto is the value of opus_complexity that adapts the
// encoder's effort to the loss the browser reports; it is the default.
const OpusComplexityAuto = "auto"

// parseOpusComplexity returns the fixed complexity that opus_complexity
// names, or 0 for auto ("auto", or unset; 0, which meant the default
// before auto existed, still does).
func parseOpusComplexity(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == OpusComplexityAuto {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 10 {
		return 0, fmt.Errorf("opus_complexity: %q is not %s or a whole number within 1-10", s, OpusComplexityAuto)
	}
	return n, nil
}

// fecPolicy decides the effort of one peer's Opus encoder from the
// browser's RTCP receiver reports on it (RFC 3550 §6.4.1 fraction
// lost). It starts cheap; a report of fecLossThreshold or more turns on
// the quality effort with FEC tuned to that loss; it goes back to cheap
// on the first report without loss that comes fecHold or more after the
// last one with loss. A loss under the threshold counts as none. It is
// used from one goroutine and takes the time of each report, so tests
// drive it with their own clock.
type fecPolicy struct {
	hold     time.Duration
	fec      bool
	loss     int
	lastLoss time.Time
}

// report takes the fraction lost (in 1/256) of a report that arrived at
// now and returns the encoder's effort, and whether it differs from what
// the previous call returned.
func (f *fecPolicy) report(now time.Time, fractionLost uint8) (transcode.OpusEffort, bool) {
	pct := float64(fractionLost) * 100 / 256
	if pct >= fecLossThreshold {
		loss := min(max(int(math.Ceil(pct)), minFECLoss), maxFECLoss)
		changed := !f.fec || loss != f.loss
		f.fec, f.loss, f.lastLoss = true, loss, now
		return f.effort(), changed
	}
	if f.fec && now.Sub(f.lastLoss) >= f.hold {
		f.fec = false
		return f.effort(), true
	}
	return f.effort(), false
}

// effort returns the effort of the current mode.
func (f *fecPolicy) effort() transcode.OpusEffort {
	if !f.fec {
		return cheapOpusEffort
	}
	e := qualityOpusEffort
	e.PacketLoss = f.loss
	return e
}

// newOpusEffort returns a new peer's effort control: cheap when
// adaptive, else the configured effort.
func (e *Engine) newOpusEffort() *transcode.OpusEffortControl {
	eff := cheapOpusEffort
	if !e.opts.opusAuto {
		eff = transcode.OpusEffort{Complexity: e.opts.opus.Complexity, FEC: e.opts.opus.FEC, PacketLoss: e.opts.opus.PacketLoss}
		if eff.Complexity == 0 {
			eff.Complexity = DefaultOpusComplexity
		}
	}
	c, err := transcode.NewOpusEffortControl(eff)
	if err != nil {
		// Only WithOpusEncoder can give an effort out of range, and the
		// encoder refuses the same at bind time: fall back to the default.
		c, _ = transcode.NewOpusEffortControl(qualityOpusEffort)
	}
	return c
}

// OpusEffortStats describes the adaptive effort of the Opus encoders
// toward browsers (opus_complexity: auto), across the engine's peers.
type OpusEffortStats struct {
	// FECActive is the number of peers whose encoder runs now at the
	// quality effort with in-band FEC because their browser reported
	// loss.
	FECActive int64
	// Switches counts the changes of effort, either way, since start.
	Switches uint64
}

// OpusEffortStats returns the current counts.
func (e *Engine) OpusEffortStats() OpusEffortStats {
	return OpusEffortStats{FECActive: e.fecActive.Load(), Switches: e.effortSwitches.Load()}
}

// adaptOpusEffort passes one receiver report's fraction lost on the
// browser's audio to the peer's policy and, when the effort changes,
// sets it on the encoder (which applies it before its next frame) and
// counts a change of mode. It runs on the peer's RTCP reader only.
func (p *Peer) adaptOpusEffort(f *fecPolicy, now time.Time, fractionLost uint8) {
	wasFEC := f.fec
	e, changed := f.report(now, fractionLost)
	if !changed {
		return
	}
	if err := p.effort.Set(e); err != nil {
		p.log.Warn("webrtc opus effort refused", "err", err.Error())
		return
	}
	if e.FEC == wasFEC {
		return
	}
	p.effortSwitches.Add(1)
	p.e.effortSwitches.Add(1)
	if e.FEC {
		p.e.fecActive.Add(1)
	} else {
		p.e.fecActive.Add(-1)
	}
	p.log.Debug("webrtc opus effort", "complexity", e.Complexity, "fec", e.FEC, "expected_loss_percent", e.PacketLoss,
		"reported_loss_percent", float64(fractionLost)*100/256)
}
