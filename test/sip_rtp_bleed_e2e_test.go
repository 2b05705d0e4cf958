//go:build e2e

package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

const (
	// bleedPhoneHz is what the queue's phone (baresip) says into the call.
	bleedPhoneHz = 440.0
	// bleedCustomerHz is the customer's microphone (a pion peer).
	bleedCustomerHz = 1000.0
	// bleedOutsiderHz is the tone the outsider injects.
	bleedOutsiderHz = 2000.0
	// bleedDigits are keyed in by the customer during the attack.
	bleedDigits = "4929#"
)

// TestSIPRTPBleed is the RTP bleed attack (Asterisk AST-2017-005) against
// the real gateway. A customer's browser escalates to voice and the
// gateway calls the queue's phone (baresip, playing 440 Hz). From the
// moment the customer presses the mic button until four seconds after
// the call connects, an outsider on 127.0.0.2 sends RTP (PCMU, one SSRC,
// in sequence, a 2 kHz tone) to every even port of the gateway's
// rtp_port_range and RTCP to every odd one, hoping to be taken for the
// phone. It must receive nothing back (no customer audio, none of the
// DTMF digits keyed in meanwhile), its tone must not reach the customer,
// the call's audio and digits must keep reaching the phone, and the gateway must count the dropped packets in
// segue_sip_rtp_foreign_packets_total and log them without flooding. The
// same holds on a trunk with symmetric_rtp (NAT mode), where an allowed
// source may be re-latched to but an outsider never.
func TestSIPRTPBleed(t *testing.T) {
	for _, tc := range []struct {
		name, trunkYAML string
	}{
		{"strict source", ""},
		{"symmetric rtp", "    symmetric_rtp: true\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "tone440.wav")
			if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, bleedPhoneHz, 0.5, 60*time.Second), 8000); err != nil {
				t.Fatal(err)
			}
			phone := peers.StartBaresip(t, "127.0.0.1", "600", src)
			g := startVoiceGateway(t, voiceConfig{
				trunks: []voiceTrunk{{name: "pbx", addr: net.JoinHostPort(phone.IP, strconv.Itoa(phone.Port))}},
				queues: []voiceQueue{{name: "support", trunk: "pbx", dial: phone.URI()}},
			}, withYAML("", tc.trunkYAML, "", ""))

			o := newOutsider(t)
			heardByOutsider := listenOutsider(o)
			blaster := blastRTP(o, g.RTPRange)

			customer := startPionVoiceCall(t, g)
			// The call runs under attack; the customer keys in digits (a
			// card number, say) that only the phone may get.
			time.Sleep(time.Second)
			customer.send(t, map[string]any{"type": "voice.dtmf", "digits": bleedDigits})
			time.Sleep(3 * time.Second)
			atCustomer := lastOf(customer.b.heard, 2*time.Second)
			sent := blaster.stop()
			got := heardByOutsider.stop(500 * time.Millisecond)
			t.Logf("the outsider sent %d RTP and %d RTCP packets to %d port pairs and received %d bytes",
				sent.rtp, sent.rtcp, (g.RTPRange[1]-g.RTPRange[0]+1)/2, got.bytes)

			if got.bytes != 0 {
				t.Errorf("the outsider received %d bytes in %d datagrams from %v: the call's audio bled to it", got.bytes, got.packets, got.from)
			}
			// The customer heard the phone, and nothing of the outsider.
			t.Logf("the customer heard %.0f Hz at %.1f dBFS during the attack", audiotest.PeakFrequency(atCustomer, 8000), audiotest.Level(atCustomer))
			if f := audiotest.PeakFrequency(atCustomer, 8000); math.Abs(f-bleedPhoneHz) > 10 {
				t.Errorf("the customer heard a peak at %.0f Hz during the attack, want the phone's %.0f Hz", f, bleedPhoneHz)
			}
			if l := audiotest.Level(atCustomer); l < -20 || l > 0 {
				t.Errorf("the customer heard %.1f dBFS during the attack, want about -6", l)
			}
			if p := audiotest.GoertzelLevel(atCustomer, 8000, bleedOutsiderHz) - audiotest.Level(atCustomer); p > -30 {
				t.Errorf("the outsider's %.0f Hz reached the customer at %.1f dB", bleedOutsiderHz, p)
			}

			// Dropped packets are counted in the metric, by protocol.
			foreign := scrapeForeign(t, g)
			t.Logf("segue_sip_rtp_foreign_packets_total %v", foreign)
			if foreign["rtp"] == 0 || foreign["rtcp"] == 0 {
				t.Errorf("segue_sip_rtp_foreign_packets_total = %v, want rtp and rtcp above 0", foreign)
			}

			// The customer hangs up; the phone's recording holds what it heard.
			customer.hangup(t)
			pcm, rate := baresipHeard(t, phone.Recordings, time.Second, 2*time.Second)
			t.Logf("the phone heard %.0f Hz at %.1f dBFS", audiotest.PeakFrequency(pcm, rate), audiotest.Level(pcm))
			if f := audiotest.PeakFrequency(pcm, rate); math.Abs(f-bleedCustomerHz) > 10 {
				t.Errorf("the phone heard a peak at %.0f Hz, want the customer's %.0f Hz", f, bleedCustomerHz)
			}
			if l := audiotest.Level(pcm); l < -20 || l > 0 {
				t.Errorf("the phone heard %.1f dBFS, want about -6", l)
			}

			out := phone.Output()
			for _, d := range bleedDigits {
				if !strings.Contains(out, fmt.Sprintf("received event: '%c' (end=1)", d)) {
					t.Errorf("the phone did not get DTMF %q", d)
				}
			}

			// The drops are logged with the outsider's address, rate-limited:
			// a handful of lines for thousands of packets.
			var warnings int
			for _, line := range strings.Split(g.Log(), "\n") {
				if strings.Contains(line, "from a foreign source") {
					warnings++
					if !strings.Contains(line, outsiderIP) {
						t.Errorf("foreign packet warning without the outsider's address: %s", line)
					}
				}
			}
			if warnings == 0 || warnings > 6 {
				t.Errorf("%d foreign packet warnings in the log for %.0f packets, want a few", warnings, foreign["rtp"]+foreign["rtcp"])
			}
		})
	}
}

// blaster sends RTP and RTCP from the outsider until stopped.
type blaster struct {
	done chan struct{}
	wg   sync.WaitGroup
	sent struct{ rtp, rtcp int }
}

// blastRTP sends, every 5 ms, one PCMU packet of a 2 kHz tone to every
// even port in rng, each port its own in-sequence stream of one SSRC, and
// every tenth round an RTCP receiver report to every odd port.
func blastRTP(o *outsider, rng [2]int) *blaster {
	b := &blaster{done: make(chan struct{})}
	lo := rng[0] + rng[0]%2
	var ports []*net.UDPAddr
	for p := lo; p+1 <= rng[1]; p += 2 {
		ports = append(ports, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
	}
	tone := audiotest.Tone(8000, bleedOutsiderHz, 0.5, time.Second)
	rr, err := (&rtcp.ReceiverReport{SSRC: 0x0bad5eed}).Marshal()
	if err != nil {
		panic(err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		payload := make([]byte, 160)
		for round := 0; ; round++ {
			select {
			case <-b.done:
				return
			case <-tk.C:
			}
			off := (round * 160) % (len(tone) - 160)
			for i, v := range tone[off : off+160] {
				payload[i] = g711.EncodeUlawFrame(v)
			}
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 0x0bad5eed,
				SequenceNumber: uint16(round), Timestamp: uint32(round * 160), Marker: round == 0}, Payload: payload}
			raw, err := pkt.Marshal()
			if err != nil {
				panic(err)
			}
			for _, a := range ports {
				if _, err := o.conn.WriteToUDP(raw, a); err == nil {
					b.sent.rtp++
				}
				if round%10 == 0 {
					if _, err := o.conn.WriteToUDP(rr, &net.UDPAddr{IP: a.IP, Port: a.Port + 1}); err == nil {
						b.sent.rtcp++
					}
				}
			}
		}
	}()
	return b
}

// stop ends the blast and returns how many packets were sent.
func (b *blaster) stop() struct{ rtp, rtcp int } {
	close(b.done)
	b.wg.Wait()
	return b.sent
}

// outsiderEars counts what the outsider's socket receives.
type outsiderEars struct {
	done           atomic.Bool
	wg             sync.WaitGroup
	bytes, packets int
	from           map[string]int
}

// listenOutsider reads the outsider's socket until stop.
func listenOutsider(o *outsider) *outsiderEars {
	e := &outsiderEars{from: map[string]int{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 2048)
		for !e.done.Load() {
			_ = o.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := o.conn.ReadFromUDP(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			e.bytes += n
			e.packets++
			e.from[from.String()]++
		}
	}()
	return e
}

// stop keeps listening for linger (for packets still on their way), then
// returns what was received.
func (e *outsiderEars) stop(linger time.Duration) *outsiderEars {
	time.Sleep(linger)
	e.done.Store(true)
	e.wg.Wait()
	return e
}

// pionVoiceCall is a customer on a pion peer connection in a voice call
// through the real gateway, with its chat socket.
type pionVoiceCall struct {
	b      *pionBrowser
	conn   *websocket.Conn
	frames chan map[string]json.RawMessage
	// cust holds the customer's token; conv is the conversation.
	cust *client
	conv conversation
}

// startPionVoiceCall opens a conversation, presses the mic button with a
// pion peer playing bleedCustomerHz, and returns once the call is
// connected.
func startPionVoiceCall(t *testing.T, g *gateway) *pionVoiceCall {
	t.Helper()
	c, cv := g.newConversation(t, "Ann Lee")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, g.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &pionVoiceCall{conn: conn, frames: make(chan map[string]json.RawMessage, 64), cust: c, conv: cv}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the socket is read all along, so pings are answered
		defer wg.Done()
		defer close(p.frames)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f map[string]json.RawMessage
			if json.Unmarshal(b, &f) == nil {
				select {
				case p.frames <- f:
				default: // nobody waits for it
				}
			}
		}
	}()
	t.Cleanup(func() { conn.CloseNow(); wg.Wait() })
	p.send(t, map[string]any{"type": "hello", "token": c.token})
	if f := p.next(t, ctx); str(f["type"]) != "welcome" || !strings.Contains(string(f["features"]), `"voice":true`) {
		t.Fatalf("welcome: %v", f)
	}
	p.b = newBrowser(t, bleedCustomerHz)
	p.send(t, map[string]any{"type": "voice.start", "sdp": p.b.offer(t)})
	for {
		f := p.next(t, ctx)
		switch str(f["type"]) {
		case "rtc.answer":
			if err := p.b.answered(str(f["sdp"])); err != nil {
				t.Fatal(err)
			}
		case "rtc.candidate":
			p.b.candidate(f["candidate"])
		case "call":
			var st struct{ State, Reason string }
			_ = json.Unmarshal(f["call"], &st)
			switch st.State {
			case "failed", "ended":
				t.Fatalf("call %s: %s", st.State, st.Reason)
			case "connected":
				return p
			}
		case "error":
			t.Fatalf("error frame: %v", f)
		}
	}
}

func (p *pionVoiceCall) send(t *testing.T, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := p.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func (p *pionVoiceCall) next(t *testing.T, ctx context.Context) map[string]json.RawMessage {
	t.Helper()
	select {
	case f, ok := <-p.frames:
		if !ok {
			t.Fatal("the chat socket closed")
		}
		return f
	case <-ctx.Done():
		t.Fatalf("no frame from the gateway: %v", ctx.Err())
	}
	return nil
}

// hangup ends the voice call from the customer's side and waits for the
// gateway to report it ended.
func (p *pionVoiceCall) hangup(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p.send(t, map[string]any{"type": "voice.hangup"})
	for {
		f := p.next(t, ctx)
		if str(f["type"]) == "call" && strings.Contains(string(f["call"]), `"state":"ended"`) {
			return
		}
	}
}

// scrapeForeign reads segue_sip_rtp_foreign_packets_total from the
// gateway's /metrics, by protocol label.
func scrapeForeign(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	return metricByLabel(t, g, "segue_sip_rtp_foreign_packets_total", "protocol")
}

// metricByLabel reads the series of one metric from the gateway's
// /metrics by the value of one label; it fails the test if there is none.
func metricByLabel(t *testing.T, g *gateway, name, label string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	prefix := name + "{" + label + `="`
	for k, v := range metricsOf(t, g) {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			out[rest[:strings.IndexByte(rest, '"')]] = v
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s series in /metrics", name)
	}
	return out
}
