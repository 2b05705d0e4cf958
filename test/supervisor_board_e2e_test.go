//go:build e2e

package test

import (
	"testing"
	"time"
)

// boardJS reads the board of a supervisor's console: each queue's
// waiting count, each agent's presence and conversations, today's counts.
const boardJS = `const b = q('board'); if (!b) return false;
const queues = {}; for (const el of b.querySelectorAll('[data-testid="board-queue"]')) queues[el.dataset.queue] = Number(el.dataset.waiting);
const agents = {}; for (const el of b.querySelectorAll('[data-testid="board-agent"]')) agents[el.dataset.agent] = {
  presence: el.dataset.presence,
  convs: [...el.querySelectorAll('[data-testid="board-conversation"]')].map((c) => c.dataset.conversation),
};
const today = (id) => Number(b.querySelector('[data-testid="today-' + id + '"]')?.textContent ?? -1);
return {queues, agents, conversations: today('conversations'), answered: today('answered')};`

type shownBoard struct {
	Queues map[string]int `json:"queues"`
	Agents map[string]struct {
		Presence string   `json:"presence"`
		Convs    []string `json:"convs"`
	} `json:"agents"`
	Conversations int `json:"conversations"`
	Answered      int `json:"answered"`
}

// TestSupervisorBoard: Sam's console (Chromium) shows the board and it
// follows what happens without a reload: Ann waits in support, Alice
// accepts her, today's counts move. From the board Sam reads Ann's
// conversation and reassigns it to Bob, who gets its history. Alice, a
// plain agent, is refused the board.
func TestSupervisorBoard(t *testing.T) {
	g := startGateway(t, withSupervisor())
	aliceWS := agentWS(t, g, g.login(t, "alice"))
	bobWS := agentWS(t, g, g.login(t, "bob"))
	aliceWS.send(map[string]any{"type": "board.subscribe", "id": "b1"})
	if f := aliceWS.expect("error"); f["code"] != "not_supervisor" {
		t.Errorf("Alice's board.subscribe: %v, want not_supervisor", f)
	}

	sam := openConsole(t, g, "sam", "/console")
	// Sam watches; he takes no chats.
	call[bool](sam, fn("", `const s = q('presence'); s.value = 'away'; s.dispatchEvent(new Event('change')); return true;`))
	waitJS[bool](sam, "the board", fn("", `return !!q('board')?.querySelector('[data-testid="board-agent"][data-agent="sam"][data-presence="away"]');`))

	_, conv := g.newConversation(t, "Ann")
	g.newConversation(t, "Bea") // left waiting
	board := waitJS[shownBoard](sam, "Ann and Bea waiting", fn("", `const v = (() => {`+boardJS+`})(); return v && v.queues.support === 2 ? v : false;`))
	if board.Conversations != 2 || board.Answered != 0 {
		t.Errorf("today before any accept: %d conversations, %d answered; want 2, 0", board.Conversations, board.Answered)
	}

	aliceWS.accept(conv.ID, "alice")
	aliceWS.send(map[string]any{"type": "message", "id": "a1", "conversation_id": conv.ID, "text": "Hello Ann, Alice here"})
	board = waitJS[shownBoard](sam, "Alice holding Ann's chat", fn("id", `const v = (() => {`+boardJS+`})();
return v && v.queues.support === 1 && v.agents.alice?.convs.includes(id) && v.answered === 1 ? v : false;`), conv.ID)
	if board.Agents["alice"].Presence != "available" || board.Agents["bob"].Presence != "available" {
		t.Errorf("presence on the board: %+v", board.Agents)
	}

	// Sam reads the conversation from the board.
	waitJS[bool](sam, "open Ann's conversation", fn("id", `const b = q('board').querySelector('[data-testid="board-conversation"][data-conversation="' + id + '"] [data-testid="board-open"]');
if (!b) return false; b.click(); return true;`), conv.ID)
	sam.waitMessage("Hello Ann, Alice here")

	// And hands it to Bob.
	waitJS[bool](sam, "reassign to Bob", fn("id", `const row = q('board').querySelector('[data-testid="board-conversation"][data-conversation="' + id + '"]');
if (!row) return false; const s = row.querySelector('[data-testid="reassign-target"]'); s.value = 'bob';
row.querySelector('[data-testid="reassign"]').click(); return true;`), conv.ID)
	if f := bobWS.expect("history"); f["conversation_id"] != conv.ID {
		t.Errorf("Bob got the history of %v, want %s", f["conversation_id"], conv.ID)
	}
	waitJS[bool](sam, "Bob holding Ann's chat on the board", fn("id", `const v = (() => {`+boardJS+`})();
return v && v.agents.bob?.convs.includes(id) && !v.agents.alice?.convs.includes(id);`), conv.ID)
}

// tonesJS measures, over ms, the level in dB of each of freqs in a
// MediaStream's audio, relative to its loudest frequency (0 dB), from the
// power spectra summed every 150 ms (see hearJS).
const tonesJS = `async (stream, ms, freqs) => {
const el = new Audio(); el.muted = true; el.srcObject = stream; await el.play().catch(() => {});
const ctx = new AudioContext(); await ctx.resume();
const src = ctx.createMediaStreamSource(stream);
const an = ctx.createAnalyser(); an.fftSize = 8192; an.smoothingTimeConstant = 0;
src.connect(an);
const sleep = (d) => new Promise((r) => setTimeout(r, d));
await sleep(300);
const bins = new Float32Array(an.frequencyBinCount), acc = new Float64Array(an.frequencyBinCount);
const end = performance.now() + ms;
while (performance.now() < end) {
  an.getFloatFrequencyData(bins);
  for (let i = 0; i < bins.length; i++) acc[i] += Math.pow(10, bins[i] / 10);
  await sleep(150);
}
src.disconnect(); el.srcObject = null; await ctx.close();
let peak = 1e-30; for (let i = 3; i < acc.length; i++) peak = Math.max(peak, acc[i]);
const hz = ctx.sampleRate / an.fftSize;
return freqs.map((f) => { const c = Math.round(f / hz); let p = 1e-30;
  for (let i = c - 2; i <= c + 2; i++) p = Math.max(p, acc[i]); return 10 * Math.log10(p / peak); });
}`

// TestSupervisorConsoleMonitors: Sam's console (Chromium, its microphone
// a 2 kHz tone) listens, from the board, to Ann's call (a pion peer at
// 1 kHz) with Alice's desk phone (baresip at 440 Hz): Sam's page hears
// both sides and Ann hears nothing of Sam; barging from the board, Ann
// hears him; Stop ends it (TestSupervisorMonitorsCall checks
// every mode at both ends).
func TestSupervisorConsoleMonitors(t *testing.T) {
	phone := startBaresipPhone(t)
	g := startVoiceGateway(t, toDeskPhone(phone), withSupervisor())
	aliceWS := agentWS(t, g, g.login(t, "alice"))
	annV := g.visitor(t, "127.0.0.2")
	conv, token := annV.newConversation("Ann")
	ann := newRTCPeer(t, annV.socket(token), "", rtcOptions{toneHz: customerToneHz})
	aliceWS.accept(conv, "alice")
	if code := ann.offer("voice.start"); code != "" {
		t.Fatalf("voice.start: %s", code)
	}

	sam := ownTab(t, "console sam", fakeMic(t, t.TempDir(), supervisorToneHz, 0.5))
	sam.logIn(g, "sam", "/console")
	// A tone is no voice: Chromium's noise suppression would take it out.
	call[bool](sam, fn("", `const md = navigator.mediaDevices, gum = md.getUserMedia.bind(md);
md.getUserMedia = () => gum({audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
return true;`))
	button := func(testID string) {
		t.Helper()
		waitJS[bool](sam, testID, fn("id, tid", `const b = q('board')?.querySelector('[data-testid="board-conversation"][data-conversation="' + id + '"][data-call-state="connected"] [data-testid="' + tid + '"]');
if (!b) return false; b.click(); return true;`), conv, testID)
	}
	button("monitor-listen")
	waitJS[bool](sam, "listening", fn("", `return q('monitor-status')?.dataset.state === 'listen' && !!q('monitor-audio')?.srcObject;`))
	levels := call[[]float64](sam, asyncFn("freqs", `return await (`+tonesJS+`)(q('monitor-audio').srcObject, 2000, freqs);`),
		[]float64{deskToneHz, customerToneHz, supervisorToneHz})
	t.Logf("Sam's page hears 440 Hz at %.1f dB, 1 kHz at %.1f dB, 2 kHz at %.1f dB (of the loudest)", levels[0], levels[1], levels[2])
	if levels[0] < -15 || levels[1] < -15 {
		t.Errorf("Sam's page does not hear both sides: 440 Hz at %.1f dB, 1 kHz at %.1f dB", levels[0], levels[1])
	}
	if l := toneLevel(lastOf(ann.heard, time.Second), supervisorToneHz); l > -45 {
		t.Errorf("listening, Ann hears Sam at %.1f dBFS", l)
	}

	button("monitor-barge")
	waitJS[bool](sam, "barging", fn("", `return q('monitor-status')?.dataset.state === 'barge';`))
	time.Sleep(1500 * time.Millisecond)
	if l := toneLevel(lastOf(ann.heard, time.Second), supervisorToneHz); l < -30 {
		t.Errorf("barging, Ann hears Sam at %.1f dBFS only", l)
	}
	button("monitor-stop")
	waitJS[bool](sam, "monitoring stopped", fn("id", `return q('monitor-status')?.dataset.state === 'none' &&
!q('board')?.querySelector('[data-conversation="' + id + '"][data-monitor="barge"]');`), conv)
}
