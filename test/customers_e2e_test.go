//go:build e2e

package test

import (
	"context"
	"database/sql"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	_ "modernc.org/sqlite" // reads the gateway's store after a rating
)

// emulate runs one Emulation command in tb's tab.
func emulate[P any](tb *tab, cmd cdp.Command[P, cdp.Empty], params P) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, cmd, params); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, cmd.Method, err)
	}
}

// phone makes tb a 390x844 phone screen with touch, as an iPhone 12-14
// reports itself.
func (tb *tab) phone() {
	tb.t.Helper()
	emulate(tb, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 3, Mobile: true})
	emulate(tb, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{Enabled: true, MaxTouchPoints: 5})
}

// timeZone sets the tab's time zone.
func (tb *tab) timeZone(tz string) {
	tb.t.Helper()
	emulate(tb, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: tz})
}

// checkPhoneLayout checks that the page does not scroll sideways and that
// each element is on screen, each control at least 32 px tall, and the element a tap
// at its centre reaches.
func (tb *tab) checkPhoneLayout(testIDs ...string) {
	tb.t.Helper()
	problems := call[[]string](tb, fn("ids", `const out = [];
const w = window.innerWidth;
if (document.documentElement.scrollWidth > w) out.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + w);
for (const id of ids) {
  const el = q(id);
  if (!el) { out.push(id + ': missing'); continue; }
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) { out.push(id + ': not shown'); continue; }
  if (r.left < 0 || r.right > w + 0.5 || r.top < 0 || r.bottom > window.innerHeight + 0.5) out.push(id + ': off screen ' + JSON.stringify(r));
  if (/^(BUTTON|INPUT|TEXTAREA|SELECT)$/.test(el.tagName) && r.height < 32) out.push(id + ': ' + r.height + ' px tall');
  const hit = root().elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (hit !== el && !el.contains(hit)) out.push(id + ': a tap at its centre reaches ' + (hit?.outerHTML ?? 'nothing').slice(0, 80));
}
return out;`), testIDs)
	if len(problems) > 0 {
		tb.t.Errorf("%s on a phone screen: %s", tb.name, strings.Join(problems, "; "))
	}
}

const parisHoursYAML = `    hours:
      time_zone: Europe/Paris
      weekly:
        mon-fri: ["08:00-12:00", "13:30-18:00"]
      holidays: ["2026-01-06"]
`

// TestCustomerOutsideHoursLeavesMessage: on Sunday evening (clock.now) the
// widget says the queue is closed and opens again on Monday at 08:00 in
// the customer's time zone, and offers only to leave a message; the
// message waits for the next agent, whose console gets it as a
// conversation to accept, hostile text shown as text.
func TestCustomerOutsideHoursLeavesMessage(t *testing.T) {
	g := startGateway(t, withYAML("", "", parisHoursYAML, ""), func(o *gatewayOptions) {
		o.topYAML += "clock:\n  now: \"2026-01-04T19:00:00Z\"\n"
	})
	customer := newTab(t, "customer")
	customer.timeZone("Europe/Paris")
	customer.loadWidget(g)
	waitJS[bool](customer, "the closed panel", fn("", `const b = q('busy'); return !!b && !b.hidden && b.dataset.mode === 'closed';`))
	customer.waitText("busy-title", "We are closed right now.")
	customer.waitText("opening-hours", "Monday")
	customer.waitText("opening-hours", "08:00")
	if open := call[bool](customer, fn("", `return !root().querySelector('form.composer').hidden || !q('busy-retry').hidden;`)); open {
		t.Fatal("the chat composer or the way back to it shows while the queue is closed")
	}
	hostile := `<img src=x onerror="window.__pwned=1"> "Bill" & co`
	customer.fill("busy-name", "Ann Closed")
	customer.fill("busy-email", "ann@example.com")
	customer.fill("busy-message", hostile)
	customer.click("busy-send")
	customer.waitText("busy-sent", "ann@example.com")

	agent := openConsole(t, g, "alice", "/console")
	id := waitJS[string](agent, "the message as a waiting conversation", fn("", `const i = [...root().querySelectorAll('[data-testid="queue-item"]')].find((e) => e.textContent.includes('Ann Closed'));
return i?.dataset.conversation ?? false;`))
	agent.acceptConversation(id)
	agent.waitMessage(hostile)
	agent.waitMessageContaining("answer by e-mail to ann@example.com")
	if pwned := call[bool](agent, `() => window.__pwned === 1 || !!document.querySelector('img[src="x"]')`); pwned {
		t.Fatal("the left message's text ran as markup in the console")
	}
	noCSPViolations(t, agent)
}

// TestCustomerQueuePositionOnPhone: two customers wait before a third,
// whose widget on a phone screen says it is number 3; once Alice takes
// the first it says number 2 with the estimated wait, live over its
// socket. The panel fits the phone: no sideways scrolling, controls on
// screen and reachable by a tap.
func TestCustomerQueuePositionOnPhone(t *testing.T) {
	g := startGateway(t)
	alice := g.login(t, "alice")
	aws := agentWS(t, g, alice)
	_, first := g.newConversation(t, "First")
	g.newConversation(t, "Second")

	customer := newTab(t, "customer on a phone")
	customer.phone()
	customer.loadWidget(g)
	customer.fill("customer-name", "Third")
	customer.send("I am the third")
	customer.waitMessage("I am the third")
	waitJS[bool](customer, "position 3", fn("", `return q('queue-position')?.dataset.position === '3';`))
	customer.waitText("queue-position", "You are number 3 in the queue")
	customer.checkPhoneLayout("chat-input", "chat-send", "widget-close", "queue-position")

	aws.accept(first.ID, "alice")
	waitJS[bool](customer, "position 2", fn("", `return q('queue-position')?.dataset.position === '2';`))
	customer.waitText("queue-position", "You are number 2 in the queue")
	// The first customer waited over a second, under a minute.
	customer.waitText("queue-position", "Estimated wait: less than a minute")
	customer.checkPhoneLayout("chat-input", "chat-send", "queue-position")
}

// TestCustomerRatesOnPhone: once Alice ends the chat, the widget on a
// phone screen offers a rating; Ann gives 4 stars with a comment, Alice's
// console shows it, and the store has it.
func TestCustomerRatesOnPhone(t *testing.T) {
	g := startGateway(t)
	customer, agent := newTab(t, "customer on a phone"), newTab(t, "console alice")
	customer.phone()
	s := chatBetween(t, g, customer, agent, "Is my meter broken?")
	agent.click("end")
	waitJS[bool](customer, "the rating", fn("", `const r = q('rating'); return !!r && !r.hidden;`))
	customer.checkPhoneLayout("rating-star", "rating-comment", "new-conversation")
	comment := `Quick and kind <b>thanks</b>`
	waitJS[bool](customer, "star 4", fn("", `const b = root().querySelector('[data-testid="rating-star"][data-score="4"]'); if (!b) return false; b.click(); return true;`))
	customer.fill("rating-comment", comment)
	customer.click("rating-send")
	waitJS[bool](customer, "the thanks", fn("", `const r = q('rating-thanks'); return !!r && !r.hidden;`))

	agent.waitText("rating", "4/5")
	agent.waitText("rating", comment)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(g.dir, "segue.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var score int
	var stored string
	if err := db.QueryRow(`SELECT rating, rating_comment FROM conversations WHERE id = ?`, s.ID).Scan(&score, &stored); err != nil {
		t.Fatal(err)
	}
	if score != 4 || stored != comment {
		t.Fatalf("stored rating %d %q, want 4 %q", score, stored, comment)
	}
	// The widget rates once: a second try is refused.
	c := g.client(t)
	c.token = s.Token
	if code, b := c.do(http.MethodPost, "/api/v1/conversations/"+s.ID+"/rating", strings.NewReader(`{"score":1}`), "application/json"); code != http.StatusConflict {
		t.Fatalf("second rating: %d %s", code, b)
	}
}

// TestCustomerLanguages: a site's data-lang="es" gives Spanish texts,
// "ar" Arabic laid out right to left, a hostile data-lang English and
// nothing injected; without data-lang a French browser gets French.
func TestCustomerLanguages(t *testing.T) {
	var gatewayURL string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attr := ""
		if l, ok := r.URL.Query()["lang"]; ok {
			attr = fmt.Sprintf(` data-lang="%s"`, html.EscapeString(l[0]))
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><p>A shop</p><script src="%s/widget.js" type="module" data-queue="support"%s></script></body></html>`, gatewayURL, attr)
	}))
	t.Cleanup(site.Close)
	g := startGateway(t, func(o *gatewayOptions) { o.extraOrigins = append(o.extraOrigins, site.URL) })
	gatewayURL = g.URL

	type shown struct {
		Lang, Dir, Direction, Launcher, Placeholder, Title string
		Pwned                                              bool
	}
	open := func(tb *tab, query string) shown {
		tb.t.Helper()
		tb.do(chromedp.Navigate(site.URL + "/" + query))
		tb.click("widget-open")
		return waitJS[shown](tb, "the panel", fn("", `const p = q('chat-panel'); if (!p || p.hidden) return false;
return {Lang: p.lang, Dir: p.dir, Direction: getComputedStyle(p).direction,
  Launcher: q('widget-open').querySelector('.launcher-text').textContent, Placeholder: q('chat-input').placeholder, Title: root().querySelector('#segue-title').textContent,
  Pwned: window.__pwned === 1 || !!document.querySelector('img[src="x"]') || !!root().querySelector('img[src="x"]')};`))
	}
	for _, tc := range []struct {
		query string
		want  shown
	}{
		{"?lang=es", shown{Lang: "es", Dir: "ltr", Direction: "ltr", Launcher: "Chatea con nosotros", Placeholder: "Escribe un mensaje…", Title: "Chatea con nosotros"}},
		{"?lang=de-AT", shown{Lang: "de", Dir: "ltr", Direction: "ltr", Launcher: "Chatten Sie mit uns", Placeholder: "Nachricht schreiben…", Title: "Chatten Sie mit uns"}},
		{"?lang=ar", shown{Lang: "ar", Dir: "rtl", Direction: "rtl", Launcher: "تحدث معنا", Placeholder: "اكتب رسالة…", Title: "تحدث معنا"}},
		{`?lang="><img src=x onerror="window.__pwned=1">`, shown{Lang: "en", Dir: "ltr", Direction: "ltr", Launcher: "Chat with us", Placeholder: "Write a message…", Title: "Chat with us"}},
	} {
		tb := newTab(t, "customer "+tc.query)
		if got := open(tb, tc.query); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.query, got, tc.want)
		}
	}

	french := newTab(t, "customer with a French browser")
	ua := call[string](french, `() => navigator.userAgent`)
	emulate(french, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: "fr-FR,fr;q=0.9,en;q=0.5"})
	want := shown{Lang: "fr", Dir: "ltr", Direction: "ltr", Launcher: "Discutez avec nous", Placeholder: "Écrivez un message…", Title: "Discutez avec nous"}
	if got := open(french, ""); got != want {
		t.Errorf("French browser: %+v, want %+v", got, want)
	}
}
