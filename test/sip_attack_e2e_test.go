//go:build e2e

package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/bench/sipflood/flood"
	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// The SIP side attacked from outsiderIP (127.0.0.2), the way a scanner or
// a host on the path would: in-dialog requests with a live call's
// identifiers, toll fraud through REFER, an extension sweep and a flood.
// Every gateway here runs with the default scanner_silence (on) unless a
// test says otherwise.

// sipDialog is what an attacker on the path learns of a call the gateway
// placed: its Call-ID and both tags.
type sipDialog struct {
	callID, gwTag, pbxTag string
}

// pbxDialog waits for the dialog.txt that uas_refer_fraud.xml writes once
// the call is up.
func pbxDialog(t *testing.T, pbx *peers.SIPp) sipDialog {
	t.Helper()
	var d sipDialog
	waitFor(t, "the PBX's dialog.txt", func() error {
		b, err := os.ReadFile(filepath.Join(pbx.Dir, "dialog.txt"))
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return fmt.Errorf("dialog.txt: %q", b)
		}
		d = sipDialog{callID: f[0], gwTag: f[1], pbxTag: "pbxtag1"}
		return nil
	})
	return d
}

// inDialog builds a request inside d as the PBX side would send it (From
// tag = the PBX's, To tag = the gateway's), from the outsider's socket.
func inDialog(o *outsider, target, method string, d sipDialog, cseq int, headers, body string) string {
	return fmt.Sprintf(`%s sip:segue@%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-attack-%d-%s;rport
From: <sip:pbx@127.0.0.1>;tag=%s
To: <sip:segue@%s>;tag=%s
Call-ID: %s
CSeq: %d %s
Contact: <sip:attacker@%s>
Max-Forwards: 70
%sContent-Length: %d

%s`, method, target, o.Addr(), cseq, strings.ToLower(method), d.pbxTag, target, d.gwTag, d.callID, cseq, method, o.Addr(), headers, len(strings.ReplaceAll(body, "\n", "\r\n")), body)
}

// spyDTMF records, in the page, every digit frame the widget receives.
func spyDTMF(tb *tab) {
	call[bool](tb, `() => { const v = document.querySelector('segue-widget').voice; window.__dtmf = [];
const on = v.onFrame.bind(v); v.onFrame = (f) => { if (f.type === 'call.dtmf') window.__dtmf.push(f.digit); return on(f); }; return true; }`)
}

// sippReceived returns the start lines of the requests SIPp received.
func sippReceived(t *testing.T, pbx *peers.SIPp) []string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(pbx.Dir, "*_messages.log"))
	if len(logs) == 0 {
		t.Fatal("no SIPp message trace")
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	// SIPp writes "UDP message received [n] bytes :" and the message after it.
	var got []string
	for _, part := range strings.Split(string(b), "message received")[1:] {
		lines := strings.Split(strings.TrimSpace(part), "\n")
		if len(lines) > 2 {
			got = append(got, strings.TrimSpace(lines[2]))
		}
	}
	return got
}

// TestSIPAttackInDialogAndTransfer: the customer calls the queue; the
// PBX (SIPp) answers. (a) From 127.0.0.2, with the call's real Call-ID
// and tags: a REFER to a premium number, a re-INVITE moving the audio to
// the attacker, an INFO with a digit, BYE and CANCEL. The attacker gets
// nothing back, not even RTP; nothing is dialled; the widget still shows
// the call connected and no digit. (b) The allowed PBX itself transfers
// the call to tel:+19005551234 (403, nothing dialled), then to 2002,
// which the trunk's transfer_targets lists (accepted, the call moves).
// scanner_silence is off here, so that the attacker's datagrams get past
// the read filter and meet the dialog's own checks; with the default
// they are dropped before parsing (see the sweep and flood tests).
func TestSIPAttackInDialogAndTransfer(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_refer_fraud.xml", "127.0.0.1", "-m", "2")
	hs := newHostSite(t)
	g := hs.startGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	}, withYAML("  scanner_silence: false\n", "    transfer_targets: [\"2xxx\"]\n", "", ""))
	customer, _ := openShopWidget(t, hs, "customer", "support", "", "Please call me")
	spyDTMF(customer)
	customer.click("voice-start")
	customer.waitCall("connected")
	d := pbxDialog(t, pbx)

	// (a) The outsider, with everything a host on the path learns.
	o := newOutsider(t)
	ip, port, _ := strings.Cut(o.Addr(), ":")
	sdp := fmt.Sprintf("v=0\no=x 1 2 IN IP4 %s\ns=-\nc=IN IP4 %s\nt=0 0\nm=audio %s RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=sendrecv\n", ip, ip, port)
	for i, req := range []struct{ method, headers, body string }{
		{"REFER", "Refer-To: <tel:+19005551234>\n", ""},
		{"INVITE", "Content-Type: application/sdp\n", sdp},
		{"INFO", "Content-Type: application/dtmf-relay\n", "Signal=5\nDuration=160\n"},
		{"UPDATE", "Content-Type: application/sdp\n", sdp},
		{"NOTIFY", "Event: refer\n", ""},
		{"OPTIONS", "", ""},
		{"CANCEL", "", ""},
		{"BYE", "", ""},
	} {
		o.sendSIP(g.SIPAddr, inDialog(o, g.SIPAddr, req.method, d, 2000000+i, req.headers, req.body))
	}
	msgs, total := o.readAll(2 * time.Second)
	if len(msgs) != 0 {
		t.Errorf("the outsider got %d datagrams (%d bytes) back, first %q", len(msgs), total, msgs[0][:min(len(msgs[0]), 60)])
	}
	if st := customer.callStatus(); st.State != "connected" {
		t.Errorf("after the attack the widget's call is %q (%q)", st.State, st.Text)
	}
	if digits := call[[]string](customer, `() => window.__dtmf`); len(digits) != 0 {
		t.Errorf("the attacker's INFO reached the widget as digits %v", digits)
	}

	// (b) The PBX's own REFERs (the test pokes SIPp to go on).
	poke := newOutsiderOn(t, "127.0.0.1")
	poke.sendSIP(pbx.Addr(), fmt.Sprintf(`OPTIONS sip:pbx@%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-poke
From: <sip:test@127.0.0.1>;tag=poke
To: <sip:pbx@%s>
Call-ID: %s
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

`, pbx.Addr(), poke.Addr(), pbx.Addr(), d.callID))
	waitFor(t, "the transfer to 2002", func() error {
		if !strings.Contains(g.Log(), "transfer completed") {
			return fmt.Errorf("no transfer yet")
		}
		return nil
	})
	if st := customer.callStatus(); st.State != "connected" {
		t.Errorf("after the transfer the widget's call is %q (%q)", st.State, st.Text)
	}
	customer.click("hangup")
	customer.waitCall("ended")
	waitSIPp(t, pbx)

	log := g.Log()
	if !regexp.MustCompile(`transfer refused.*tel:\+19005551234`).MatchString(log) {
		t.Error("the gateway did not log the refused transfer with its target")
	}
	if regexp.MustCompile(`dialling.*1900`).MatchString(log) || strings.Count(log, "transfer accepted") != 1 {
		t.Errorf("the gateway dialled or accepted more than the listed transfer:\n%s", grepLines(log, "transfer", "dialling"))
	}
	var invites []string
	for _, l := range sippReceived(t, pbx) {
		if strings.HasPrefix(l, "INVITE ") {
			invites = append(invites, l)
		}
	}
	if len(invites) != 2 || !strings.HasPrefix(invites[0], "INVITE sip:600@") || !strings.HasPrefix(invites[1], "INVITE sip:2002@") {
		t.Errorf("INVITEs that reached the PBX: %q, want the queue's call and the transfer to 2002 only", invites)
	}
}

// newOutsiderOn is newOutsider on another loopback address (the allowed
// PBX's, to speak as it).
func newOutsiderOn(t *testing.T, ip string) *outsider {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &outsider{t: t, conn: c}
}

func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// svwarBound is a Python prologue for Debian's sipvicious 0.3.3, whose
// svwar accepts -b (--bindingip) but never hands it to its scanner, so
// it always sends from the address the kernel picks (127.0.0.1 here, an
// allowed PBX). It runs svwar's own code with the binding passed on.
const svwarBound = `import sys
sys.path.insert(0, sys.argv[1])
from sipvicious import svwar
init, ip = svwar.TakeASip.__init__, sys.argv[2]
def bound(self, *a, **k):
    k['bindingip'] = ip
    init(self, *a, **k)
svwar.TakeASip.__init__ = bound
sys.argv = ['svwar'] + sys.argv[3:]
sys.exit(svwar.main())
`

// svwarFound runs svwar (in dir) from src against the gateway with
// method over the extensions of dict and returns its output and the
// extensions it reports.
func svwarFound(src, gwSIP, method, dict, dir string) (string, []string, error) {
	host, port, _ := strings.Cut(gwSIP, ":")
	script, err := exec.LookPath("svwar")
	if err != nil {
		return "", nil, fmt.Errorf("svwar (Debian package sipvicious): %w", err)
	}
	if script, err = filepath.EvalSymlinks(script); err != nil {
		return "", nil, err
	}
	head, err := os.ReadFile(script)
	if err != nil {
		return "", nil, err
	}
	interp, _, _ := strings.Cut(strings.TrimPrefix(string(head), "#!"), "\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strings.TrimSpace(interp), "-c", svwarBound, filepath.Dir(script), src,
		"-b", src, "-p", port, "-m", method, "-d", dict, "--force", "--maximumtime", "2", "-t", "0.005", host)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	b, _ := cmd.CombinedOutput() // svwar exits non-zero when it finds nothing
	out := string(b)
	if ctx.Err() != nil {
		return out, nil, fmt.Errorf("svwar did not finish: %s", out)
	}
	if strings.Contains(out, "Could not bind") || !strings.Contains(out, "found nothing") && !strings.Contains(out, "Extension") {
		return out, nil, fmt.Errorf("svwar did not run a scan from %s:\n%s", src, out)
	}
	var found []string
	for _, l := range strings.Split(out, "\n") {
		// Findings are table rows: "| 1001 | reqauth |".
		f := strings.Split(l, "|")
		if len(f) >= 4 && strings.TrimSpace(f[1]) != "" && !strings.EqualFold(strings.TrimSpace(f[1]), "Extension") {
			found = append(found, strings.TrimSpace(f[1]))
		}
	}
	return out, found, nil
}

// sweepRequest is a scanner's out-of-dialog probe for user.
func sweepRequest(o *outsider, gwSIP, method, user string, n int) string {
	body := ""
	headers := ""
	if method == "INVITE" {
		body = "v=0\no=x 1 1 IN IP4 127.0.0.2\ns=-\nc=IN IP4 127.0.0.2\nt=0 0\nm=audio 9 RTP/AVP 0\n"
		headers = "Content-Type: application/sdp\n"
	}
	return fmt.Sprintf(`%s sip:%s@%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-sweep-%d;rport
From: <sip:scanner@127.0.0.2>;tag=sweep%d
To: <sip:%s@%s>
Call-ID: sweep-%d@127.0.0.2
CSeq: 1 %s
Contact: <sip:scanner@%s>
Max-Forwards: 70
%sContent-Length: %d

%s`, method, user, gwSIP, o.Addr(), n, n, user, gwSIP, n, method, o.Addr(), headers, len(strings.ReplaceAll(body, "\n", "\r\n")), body)
}

// answersTo sends every probe, then returns, per probe, the start lines
// of the responses that came back within a second (nil for silence),
// told apart by Call-ID.
func answersTo(o *outsider, gwSIP string, probes [][2]string, base int) [][]string {
	for i, p := range probes {
		o.sendSIP(gwSIP, sweepRequest(o, gwSIP, p[0], p[1], base+i))
	}
	msgs, _ := o.readAll(time.Second)
	out := make([][]string, len(probes))
	for _, m := range msgs {
		first, _, _ := bytes.Cut(m, []byte("\r\n"))
		cid := regexp.MustCompile(`(?m)^(?:Call-ID|i):\s*sweep-(\d+)@`).FindSubmatch(m)
		if cid == nil {
			o.t.Errorf("a response to no probe: %q", m)
			continue
		}
		n, _ := strconv.Atoi(string(cid[1]))
		if i := n - base; i >= 0 && i < len(out) {
			out[i] = append(out[i], string(first))
		}
	}
	return out
}

// TestSIPSweepFindsNothing: a sipvicious sweep (svwar with REGISTER,
// OPTIONS and INVITE over a dictionary holding a live conversation's
// conv-<id>, and svmap) from 127.0.0.2 finds nothing, and by hand a valid
// and an invalid conversation get the same answer: none with the default
// scanner_silence; with it off, the same single 403, and then silence
// once the source's budget is spent.
func TestSIPSweepFindsNothing(t *testing.T) {
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: "127.0.0.1:5999"}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@127.0.0.1:5999"}},
	})
	_, conv := g.newConversation(t, "Ann Lee")
	valid := "conv-" + conv.ID
	dict := filepath.Join(t.TempDir(), "extensions.txt")
	words := []string{"100", "101", "1000", "1001", "2002", "600", "admin", "conv-1", "conv-00000000", valid, "conv-" + strings.Repeat("f", len(conv.ID))}
	if err := os.WriteFile(dict, []byte(strings.Join(words, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every scanner at once: svwar with three methods and svmap from the
	// outsider, and, as the control, the same INVITE sweep from the PBX's
	// address, which tells the live conversation from the others (the
	// gateway rings its customer).
	type scan struct {
		src, method string
		out         string
		found       []string
		err         error
	}
	scans := []*scan{{src: "127.0.0.1", method: "INVITE"}, {src: outsiderIP, method: "REGISTER"}, {src: outsiderIP, method: "OPTIONS"}, {src: outsiderIP, method: "INVITE"}}
	var wg sync.WaitGroup
	for _, sc := range scans {
		dir := t.TempDir()
		wg.Go(func() { sc.out, sc.found, sc.err = svwarFound(sc.src, g.SIPAddr, sc.method, dict, dir) })
	}
	var svmapOut []byte
	wg.Go(func() {
		host, port, _ := strings.Cut(g.SIPAddr, ":")
		svmapOut, _ = exec.Command("svmap", "-b", outsiderIP, "-p", port, host).CombinedOutput()
	})
	wg.Wait()
	for _, sc := range scans {
		if sc.err != nil {
			t.Fatal(sc.err)
		}
	}
	if !slices.Contains(scans[0].found, valid) {
		t.Errorf("svwar from the allowed PBX found %v, want %s: the sweep cannot tell anything", scans[0].found, valid)
	}
	for _, sc := range scans[1:] {
		if len(sc.found) != 0 || strings.Contains(sc.out, conv.ID) {
			t.Errorf("svwar -m %s from %s found %v:\n%s", sc.method, sc.src, sc.found, sc.out)
		}
	}
	if !strings.Contains(string(svmapOut), "found nothing") {
		t.Errorf("svmap from %s found the gateway:\n%s", outsiderIP, svmapOut)
	}

	// By hand: the live conversation and a made-up one, alike.
	o := newOutsider(t)
	var probes [][2]string
	for _, m := range []string{"OPTIONS", "REGISTER", "INVITE"} {
		probes = append(probes, [2]string{m, valid}, [2]string{m, "conv-" + strings.Repeat("0", len(conv.ID))})
	}
	for i, a := range answersTo(o, g.SIPAddr, probes, 0) {
		if len(a) != 0 {
			t.Errorf("%s %s: answered %q with scanner_silence on", probes[i][0], probes[i][1], a)
		}
	}
	// What was dropped is counted for the admin to see.
	if n := metricsOf(t, g)["segue_sip_requests_refused_total"]; n < float64(len(probes)) {
		t.Errorf("segue_sip_requests_refused_total = %v after the sweep, want at least %d", n, len(probes))
	}

	// scanner_silence off: one stateless 403 for everyone alike.
	loud := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: "127.0.0.1:5999"}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@127.0.0.1:5999"}},
	}, withYAML("  scanner_silence: false\n", "", "", ""))
	_, conv2 := loud.newConversation(t, "Ann Lee")
	probes = nil
	for _, m := range []string{"OPTIONS", "REGISTER", "INVITE"} {
		probes = append(probes, [2]string{m, "conv-" + conv2.ID}, [2]string{m, "conv-" + strings.Repeat("0", len(conv2.ID))})
	}
	o2 := newOutsider(t)
	answers := answersTo(o2, loud.SIPAddr, probes, 100)
	for i, a := range answers {
		if len(a) != 1 || a[0] != "SIP/2.0 403 Forbidden" {
			t.Errorf("%s %s with scanner_silence off: %q, want one 403", probes[i][0], probes[i][1], a)
		}
	}
	// Past the budget (10 at once, 2/s after): silence.
	for i := range 30 {
		o2.sendSIP(loud.SIPAddr, sweepRequest(o2, loud.SIPAddr, "OPTIONS", strconv.Itoa(1000+i), 200+i))
	}
	msgs, _ := o2.readAll(time.Second)
	if len(msgs) > 12 {
		t.Errorf("30 more probes at once got %d answers: no per-source budget", len(msgs))
	}
}

// TestSIPFloodKeepsCallsWorking: 10,000 OPTIONS/s for 30 s from
// 127.0.0.2 (bench/sipflood's engine). The gateway answers none of
// them, its memory stays bounded, and a call set up in the middle of the
// flood carries audio both ways: the customer hears the desk phone's
// 440 Hz and the phone hears the customer's 1 kHz.
func TestSIPFloodKeepsCallsWorking(t *testing.T) {
	phone := startBaresipPhone(t)
	hs := newHostSite(t)
	g := hs.startGateway(t, voiceConfig{
		trunks: []voiceTrunk{baresipTrunk(phone)},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: phone.URI()}},
	})
	before := rssOf(t, g.Pid())
	type outcome struct {
		res flood.Result
		err error
	}
	done := make(chan outcome, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		res, err := flood.Run(ctx, flood.Config{Target: g.SIPAddr, From: outsiderIP, Rate: 10000, Duration: 30 * time.Second})
		done <- outcome{res, err}
	}()
	stopped := false
	t.Cleanup(func() { // a failure below stops the flood early
		cancel()
		if !stopped {
			<-done
		}
	})
	time.Sleep(time.Second)

	customer, _ := openShopWidget(t, hs, "customer", "support", "", "Calling during a flood")
	customer.click("voice-start")
	customer.waitCall("connected")
	// Room on both sides of the measurements: media may take a moment to
	// settle on a loaded machine, and the phone's recording starts with
	// the first packet it gets.
	time.Sleep(time.Second)
	expectHeard(t, "the customer during the flood", customer.measureHeard(2000), deskToneHz, -16, -1)
	time.Sleep(time.Second)
	customer.click("hangup")
	customer.waitCall("ended")
	pcm, rate := baresipHeard(t, phone.Recordings, time.Second, 1500*time.Millisecond)
	t.Logf("the desk phone heard %.0f Hz at %.1f dBFS", audiotest.PeakFrequency(pcm, rate), audiotest.Level(pcm))
	if f := audiotest.PeakFrequency(pcm, rate); f < voiceMicHz-10 || f > voiceMicHz+10 {
		t.Errorf("the desk phone heard a peak at %.0f Hz, want %.0f", f, voiceMicHz)
	}
	if l := audiotest.Level(pcm); l < -14 || l > -2 {
		t.Errorf("the desk phone heard %.1f dBFS, want about -6", l)
	}

	out := <-done
	stopped = true
	if out.err != nil {
		t.Fatal(out.err)
	}
	after := rssOf(t, g.Pid())
	t.Logf("flood: %v; gateway RSS %d MB before, %d MB after", out.res, before>>20, after>>20)
	if out.res.Sent < 240000 {
		t.Errorf("the flood sent only %d requests in %v (want about 300,000): the test did not flood", out.res.Sent, out.res.Elapsed)
	}
	if out.res.Received != 0 {
		t.Errorf("the gateway answered %d flood packets (%d bytes)", out.res.Received, out.res.ReceivedBytes)
	}
	if after-before > 50<<20 {
		t.Errorf("the gateway's RSS grew by %d MB during the flood", (after-before)>>20)
	}
}
