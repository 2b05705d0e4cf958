package gateway

import (
	"math"
	"sync"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// Monitor modes of a supervisor on a call (docs/supervisors.md).
const (
	// monitorListen: the supervisor hears both sides; nobody hears the
	// supervisor.
	monitorListen = "listen"
	// monitorWhisper: the agent's desk phone hears the supervisor too;
	// the customer does not.
	monitorWhisper = "whisper"
	// monitorBarge: both sides hear the supervisor.
	monitorBarge = "barge"
)

// tapHeld bounds the audio a tap keeps waiting to be mixed into the other
// direction (200 ms at 8 kHz): older audio is dropped, so a stalled side
// never adds delay that lasts.
const tapHeld = 1600

// tapIdle is how long a direction may carry nothing before the audio
// waiting to be mixed into it goes out on its own: a side in silence
// suppression (DTX) or on hold must not silence the supervisor.
const tapIdle = 100 * time.Millisecond

// callTap sits on both directions of a bridged call's 8 kHz PCM (the
// phone's audio toward the customer, the customer's toward the phone) and
// on the supervisor's microphone. It sends the supervisor a mix of both
// sides and, by mode, mixes the supervisor into what the phone hears
// (whisper) or what both hear (barge). Each direction drives its own mix:
// the audio of the other source waits in a short buffer until the next
// frame of the direction it joins. Its writers are safe for concurrent
// use; the destinations it writes to must not block (the legs' AudioIn
// queues, which never do).
type callTap struct {
	now func() time.Time

	mu   sync.Mutex
	mode string
	// listener receives the mix of both sides (the supervisor's peer).
	listener transcode.PCMWriter
	// toWeb and toPhone are the bridge's destinations, set by the writers
	// fromPhone and fromCustomer wrap.
	toWeb, toPhone transcode.PCMWriter
	// custHeld is the customer's audio waiting for the phone's next frame
	// toward the listener; supPhone and supWeb the supervisor's, waiting
	// for the next frame toward the phone and the customer.
	custHeld, supPhone, supWeb pcmFIFO
	// lastPhone and lastWeb are when each direction last carried audio.
	lastPhone, lastWeb time.Time
	mix                transcode.PCM16
}

func newCallTap(listener transcode.PCMWriter, now func() time.Time) *callTap {
	return &callTap{now: now, mode: monitorListen, listener: listener}
}

// setMode changes what the supervisor's microphone reaches. Audio of the
// supervisor still waiting to be mixed is dropped when a direction is
// left out.
func (t *callTap) setMode(mode string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mode = mode
	if mode == monitorListen {
		t.supPhone.reset()
	}
	if mode != monitorBarge {
		t.supWeb.reset()
	}
}

// fromPhone wraps dst, where the phone's audio goes (the customer's
// peer): the returned writer is what the phone leg writes to.
func (t *callTap) fromPhone(dst transcode.PCMWriter) transcode.PCMWriter {
	t.mu.Lock()
	t.toWeb = dst
	t.mu.Unlock()
	return tapWriter{t: t, write: t.phoneFrame, name: "Tap(phone) -> " + dst.String()}
}

// fromCustomer wraps dst, where the customer's audio goes (the phone).
func (t *callTap) fromCustomer(dst transcode.PCMWriter) transcode.PCMWriter {
	t.mu.Lock()
	t.toPhone = dst
	t.mu.Unlock()
	return tapWriter{t: t, write: t.customerFrame, name: "Tap(customer) -> " + dst.String()}
}

// fromSupervisor is where the supervisor's microphone goes.
func (t *callTap) fromSupervisor() transcode.PCMWriter {
	return tapWriter{t: t, write: t.supervisorFrame, name: "Tap(supervisor)"}
}

// phoneFrame: the phone's audio goes to the customer (with the
// supervisor's when barging) and, mixed with the customer's, to the
// supervisor.
func (t *callTap) phoneFrame(s transcode.PCM16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastPhone = t.now()
	out := s
	if t.mode == monitorBarge && t.supWeb.len() > 0 {
		out = t.mixed(s, &t.supWeb)
	}
	var err error
	if t.toWeb != nil {
		err = t.toWeb.WriteSample(out)
	}
	if t.listener != nil {
		_ = t.listener.WriteSample(t.mixed(s, &t.custHeld))
	}
	return err
}

// customerFrame: the customer's audio goes to the phone (with the
// supervisor's when whispering or barging), and waits to be mixed into
// the phone's audio toward the supervisor, or goes to the supervisor
// alone while the phone side is idle.
func (t *callTap) customerFrame(s transcode.PCM16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.lastWeb = now
	out := s
	if t.mode != monitorListen && t.supPhone.len() > 0 {
		out = t.mixed(s, &t.supPhone)
	}
	var err error
	if t.toPhone != nil {
		err = t.toPhone.WriteSample(out)
	}
	if t.listener != nil {
		if now.Sub(t.lastPhone) > tapIdle {
			_ = t.listener.WriteSample(s)
		} else {
			t.custHeld.put(s)
		}
	}
	return err
}

// supervisorFrame: while only listening, the supervisor's audio goes
// nowhere. Whispering, it joins what the phone hears; barging, what the
// customer hears too. A direction that is idle takes it on its own.
func (t *callTap) supervisorFrame(s transcode.PCM16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mode == monitorListen {
		return nil
	}
	now := t.now()
	if t.toPhone != nil && now.Sub(t.lastWeb) > tapIdle {
		_ = t.toPhone.WriteSample(s)
	} else {
		t.supPhone.put(s)
	}
	if t.mode != monitorBarge {
		return nil
	}
	if t.toWeb != nil && now.Sub(t.lastPhone) > tapIdle {
		_ = t.toWeb.WriteSample(s)
	} else {
		t.supWeb.put(s)
	}
	return nil
}

// mixed returns s plus as much of held as s is long, saturated, in a
// buffer of the tap's (valid until the next call); t.mu is held.
func (t *callTap) mixed(s transcode.PCM16, held *pcmFIFO) transcode.PCM16 {
	t.mix = append(t.mix[:0], s...)
	held.addInto(t.mix)
	return t.mix
}

// tapWriter is one entry into a callTap. Close does nothing: the tap's
// owner (the monitor session) ends it.
type tapWriter struct {
	t     *callTap
	write func(transcode.PCM16) error
	name  string
}

func (w tapWriter) WriteSample(s transcode.PCM16) error { return w.write(s) }
func (w tapWriter) SampleRate() int                     { return 8000 }
func (w tapWriter) String() string                      { return w.name }
func (w tapWriter) Close() error                        { return nil }

// pcmFIFO is audio waiting to be mixed, at most tapHeld samples: the
// oldest goes first when more arrives.
type pcmFIFO struct{ buf transcode.PCM16 }

func (f *pcmFIFO) len() int { return len(f.buf) }
func (f *pcmFIFO) reset()   { f.buf = f.buf[:0] }

func (f *pcmFIFO) put(s transcode.PCM16) {
	f.buf = append(f.buf, s...)
	if over := len(f.buf) - tapHeld; over > 0 {
		f.buf = f.buf[:copy(f.buf, f.buf[over:])]
	}
}

// addInto adds the oldest len(dst) samples (or all there are) into dst,
// saturating, and drops them.
func (f *pcmFIFO) addInto(dst transcode.PCM16) {
	n := min(len(dst), len(f.buf))
	for i := range n {
		dst[i] = saturate(int32(dst[i]) + int32(f.buf[i]))
	}
	f.buf = f.buf[:copy(f.buf, f.buf[n:])]
}

func saturate(v int32) int16 {
	return int16(max(math.MinInt16, min(math.MaxInt16, v)))
}
