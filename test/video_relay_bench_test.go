//go:build e2e

package test

// BenchmarkRelay720p measures what relaying video costs the gateway: N
// conversations, each with a pion "customer" sending a 720p-sized VP8 RTP
// stream (30 frames/s, about 2 Mbit/s) through segue serve to a pion
// "console", for a fixed time, with the gateway's CPU time read from
// /proc/<pid>/stat. Run it with
//
//	go test -tags e2e -run '^$' -bench Relay720p -benchtime 1x ./test/
//
// SEGUE_BENCH_STREAMS (e.g. "1,4,8") and SEGUE_BENCH_SECONDS change the
// levels and the measuring time.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

const (
	benchFPS          = 30
	benchFrameBytes   = 2_000_000 / 8 / benchFPS // about 2 Mbit/s
	benchPacketBytes  = 1150
	benchClockTicksHz = 100 // USER_HZ on Linux
)

func benchLevels() []int {
	levels := []int{1, 4, 8}
	if v := os.Getenv("SEGUE_BENCH_STREAMS"); v != "" {
		levels = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				levels = append(levels, n)
			}
		}
	}
	return levels
}

func benchSeconds() int {
	if n, err := strconv.Atoi(os.Getenv("SEGUE_BENCH_SECONDS")); err == nil && n > 0 {
		return n
	}
	return 20
}

func BenchmarkRelay720p(b *testing.B) {
	for _, n := range benchLevels() {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			for range b.N {
				relayRun(b, n, time.Duration(benchSeconds())*time.Second)
			}
		})
	}
}

// procCPU returns a process's user+system CPU time.
func procCPU(tb testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / benchClockTicksHz
}

// sendFrame writes v as a JSON frame. Unlike wsConn.send it returns its
// error, so that the signalling goroutines can use it; coder/websocket
// allows concurrent writers.
func sendFrame(ctx context.Context, w *wsConn, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.c.Write(ctx, websocket.MessageText, raw)
}

type sigFrame struct {
	Type           string                    `json:"type"`
	ConversationID string                    `json:"conversation_id"`
	SDP            string                    `json:"sdp"`
	Candidate      *pwebrtc.ICECandidateInit `json:"candidate"`
	Conversation   struct{ ID string }       `json:"conversation"`
	Code           string                    `json:"code"`
	Message        json.RawMessage           `json:"message"`
}

// negotiate answers the gateway's frames for one peer connection until ctx ends.
func negotiate(ctx context.Context, w *wsConn, pc *pwebrtc.PeerConnection, convID string, frames <-chan sigFrame, errs chan<- error) {
	for {
		var f sigFrame
		select {
		case <-ctx.Done():
			return
		case f = <-frames:
		}
		switch f.Type {
		case "rtc.answer":
			if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: f.SDP}); err != nil {
				errs <- err
			}
		case "rtc.offer":
			if err := pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: f.SDP}); err != nil {
				errs <- err
				continue
			}
			ans, err := pc.CreateAnswer(nil)
			if err != nil {
				errs <- err
				continue
			}
			gathered := pwebrtc.GatheringCompletePromise(pc)
			_ = pc.SetLocalDescription(ans)
			<-gathered
			_ = sendFrame(ctx, w, map[string]any{"type": "rtc.answer", "conversation_id": convID, "sdp": pc.LocalDescription().SDP})
		case "rtc.candidate":
			if f.Candidate != nil && f.Candidate.Candidate != "" {
				_ = pc.AddICECandidate(*f.Candidate)
			}
		case "error":
			errs <- fmt.Errorf("error frame %s: %s", f.Code, f.Message)
		}
	}
}

func gatheredOffer(tb testing.TB, pc *pwebrtc.PeerConnection) string {
	o, err := pc.CreateOffer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	gathered := pwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		tb.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// readLoop hands each of a socket's frames to route.
func readLoop(ctx context.Context, w *wsConn, route func(sigFrame)) {
	for {
		_, raw, err := w.c.Read(ctx)
		if err != nil {
			return
		}
		var f sigFrame
		if json.Unmarshal(raw, &f) == nil {
			route(f)
		}
	}
}

func relayRun(b *testing.B, n int, measure time.Duration) {
	b.StopTimer()
	g := startGateway(b, func(o *gatewayOptions) {
		o.maxChats = max(o.maxChats, n) // Alice takes every conversation
		o.maxVideoSessions = n
		o.maxPeersPerIP = n // every customer comes from 127.0.0.1
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := loopbackAPI(b)

	// Alice logs in once; her socket carries every conversation.
	aws := agentWS(b, g, g.login(b, "alice"))
	var amu sync.Mutex
	agentFrames := map[string]chan sigFrame{}
	accepted := make(chan string, n)
	go readLoop(ctx, aws, func(f sigFrame) {
		if f.Type == "conversation" && f.Conversation.ID != "" {
			select {
			case accepted <- f.Conversation.ID:
			default:
			}
		}
		amu.Lock()
		ch := agentFrames[f.ConversationID]
		amu.Unlock()
		if ch != nil {
			ch <- f
		}
	})

	var sent, received, recvBytes atomic.Int64
	errs := make(chan error, 64)
	var senders []*pwebrtc.TrackLocalStaticRTP
	for i := range n {
		// The customer: a conversation, a socket, an offer with a camera.
		customer, conv := g.newConversation(b, fmt.Sprintf("Bench %d", i))
		convID := conv.ID
		amu.Lock()
		agentFrames[convID] = make(chan sigFrame, 64)
		amu.Unlock()
		if err := sendFrame(ctx, aws, map[string]any{"type": "accept", "conversation_id": convID}); err != nil {
			b.Fatal(err)
		}

		cws := customerWS(b, g, customer.token)
		custFrames := make(chan sigFrame, 64)
		go readLoop(ctx, cws, func(f sigFrame) { custFrames <- f })
		cpc, err := api.NewPeerConnection(pwebrtc.Configuration{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cpc.Close() })
		cam, _ := pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, "camera", fmt.Sprintf("cam-%d", i))
		if _, err := cpc.AddTrack(cam); err != nil {
			b.Fatal(err)
		}
		senders = append(senders, cam)
		if err := sendFrame(ctx, cws, map[string]any{"type": "video.start", "sdp": gatheredOffer(b, cpc)}); err != nil {
			b.Fatal(err)
		}
		go negotiate(ctx, cws, cpc, convID, custFrames, errs)

		// The console joins with a receive-only video transceiver.
		apc, err := api.NewPeerConnection(pwebrtc.Configuration{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { apc.Close() })
		if _, err := apc.AddTransceiverFromKind(pwebrtc.RTPCodecTypeVideo, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			b.Fatal(err)
		}
		apc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
			buf := make([]byte, 1500)
			for {
				k, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				received.Add(1)
				recvBytes.Add(int64(k))
			}
		})
		select {
		case <-accepted:
		case <-time.After(10 * time.Second):
			b.Fatal("conversation not accepted")
		}
		if err := sendFrame(ctx, aws, map[string]any{"type": "media.join", "conversation_id": convID, "sdp": gatheredOffer(b, apc)}); err != nil {
			b.Fatal(err)
		}
		amu.Lock()
		ach := agentFrames[convID]
		amu.Unlock()
		go negotiate(ctx, aws, apc, convID, ach, errs)
	}

	// The gateway's own cost with the connections up and no video yet.
	time.Sleep(2 * time.Second)
	pid := g.Pid()
	idle0, idleT0 := procCPU(b, pid), time.Now()
	time.Sleep(3 * time.Second)
	idlePct := 100 * (procCPU(b, pid) - idle0).Seconds() / time.Since(idleT0).Seconds()

	// Every customer sends 30 frames/s of ~8 KB, in ~1150-byte packets.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var wg sync.WaitGroup
	for i, track := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, benchPacketBytes)
			copy(payload, []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}) // a VP8 key frame start
			tk := time.NewTicker(time.Second / benchFPS)
			defer tk.Stop()
			seq := uint16(i * 1000)
			for frame := uint32(0); ; frame++ {
				select {
				case <-sendCtx.Done():
					return
				case <-tk.C:
				}
				for left := benchFrameBytes; left > 0; left -= benchPacketBytes {
					size := min(left, benchPacketBytes)
					seq++
					if track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: frame * 3000, Marker: left <= benchPacketBytes}, Payload: payload[:size]}) == nil {
						sent.Add(1)
					}
				}
			}
		}()
	}

	// Wait until every console receives, then measure.
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < int64(n*benchFPS) {
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d packets relayed after 30 s", received.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // settle
	cpu0, sent0, recv0, bytes0, t0 := procCPU(b, pid), sent.Load(), received.Load(), recvBytes.Load(), time.Now()
	b.StartTimer()
	time.Sleep(measure)
	b.StopTimer()
	cpu1, sent1, recv1, bytes1, t1 := procCPU(b, pid), sent.Load(), received.Load(), recvBytes.Load(), time.Now()
	stopSending()
	wg.Wait()

	wall := t1.Sub(t0).Seconds()
	cpuPct := 100 * (cpu1 - cpu0).Seconds() / wall
	b.ReportMetric(cpuPct, "gw-cpu-%")
	b.ReportMetric(idlePct, "gw-idle-cpu-%")
	b.ReportMetric(cpuPct/float64(n), "gw-cpu-%/stream")
	b.ReportMetric(float64(recv1-recv0)/wall, "pkts-relayed/s")
	b.ReportMetric(float64(bytes1-bytes0)*8/wall/1e6, "Mbit/s-relayed")
	b.ReportMetric(100*(1-float64(recv1-recv0)/float64(max(1, sent1-sent0))), "loss-%")
}
