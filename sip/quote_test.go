package sip

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// hostileNames are display names a customer may type, with what the From
// header must show for each once quoted and parsed back.
var hostileNames = []struct {
	name, typed, want string
}{
	{"plain", "Ann Lee", "Ann Lee"},
	{"quote and uri", `Evil" <sip:+19005551234@attacker.example>;x="`, `Evil" <sip:+19005551234@attacker.example>;x="`},
	{"trailing backslash", `Ann\`, `Ann\`},
	{"escaped quote", `a\"b`, `a\"b`},
	{"only quotes", `"""`, `"""`},
	{"angle uri", "<sip:+19005551234@attacker.example>", "<sip:+19005551234@attacker.example>"},
	{"crlf header", "Ann\r\nX-Injected: yes\r\n\r\nINVITE sip:x@y SIP/2.0", "AnnX-Injected: yesINVITE sip:x@y SIP/2.0"},
	{"nul", "Ann\x00Lee", "AnnLee"},
	{"tab", "Ann\tLee", "Ann Lee"},
	{"invalid utf-8", "Ann\xffLee", "AnnLee"},
	{"bidi override", "Ann \u202eeeL", "Ann eeL"},
	{"unicode", "Zoë 李小龍 😀", "Zoë 李小龍 😀"},
	{"long", strings.Repeat("é", 300), strings.Repeat("é", maxDisplayName)},
	{"long quotes", strings.Repeat(`\"`, 100), strings.Repeat(`\"`, maxDisplayName/2)},
	{"backslash at the cut", strings.Repeat("a", maxDisplayName-1) + `\\\\`, strings.Repeat("a", maxDisplayName-1) + `\`},
}

// TestDisplayNameQuoting builds the INVITE for each hostile name, writes
// it as it goes on the wire and parses it back with sipgo's parser: the
// From URI is still the trunk's and the display name is what was typed,
// less what may not be in a quoted-string.
func TestDisplayNameQuoting(t *testing.T) {
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:pbx.example.com", FromUser: "segue", FromDisplay: `Shop "Main" \ Desk`}})
	tr := s.trunkTable().byName["pbx"]
	recipient := sipmsg.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}
	cases := append(hostileNames[:len(hostileNames):len(hostileNames)],
		struct{ name, typed, want string }{"nothing left", "\r\n\x00\u202e", `Shop "Main" \ Desk`},
		struct{ name, typed, want string }{"empty", "", `Shop "Main" \ Desk`})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := s.newInvite(tr, recipient, []byte("v=0\r\n"), DialOptions{DisplayName: tc.typed})
			wire := req.String()
			msg, err := sipmsg.ParseMessage([]byte(wire))
			if err != nil {
				t.Fatalf("the INVITE does not parse: %v\n%s", err, wire)
			}
			got, ok := msg.(*sipmsg.Request)
			if !ok {
				t.Fatalf("parsed %T", msg)
			}
			from := got.From()
			if from == nil {
				t.Fatalf("no From in\n%s", wire)
			}
			if from.Address.Host != "pbx.example.com" || from.Address.User != "segue" || from.Address.Scheme != "sip" {
				t.Errorf("From URI %q, want the trunk's sip:segue@pbx.example.com\n%s", from.Address.String(), wire)
			}
			if !from.Params.Has("tag") || len(from.Params.Keys()) != 1 {
				t.Errorf("From params %q, want only the tag", from.Params.String())
			}
			if d := unquoteDisplayName(from.DisplayName); d != tc.want {
				t.Errorf("display name %q, want %q", d, tc.want)
			}
			if n := len(got.GetHeaders("From")); n != 1 {
				t.Errorf("%d From headers", n)
			}
			if h := got.GetHeader("X-Injected"); h != nil {
				t.Errorf("injected header %q", h.Value())
			}
			if got.Recipient.String() != recipient.String() {
				t.Errorf("Request-URI %q", got.Recipient.String())
			}
		})
	}
}

// TestDisplayNameReachesPeer places a call with each hostile name to a
// second stack (a sipgo-based PBX): the call connects, the PBX sees the
// trunk's From URI, and the name round-trips.
func TestDisplayNameReachesPeer(t *testing.T) {
	type seen struct{ from, display string }
	got := make(chan seen, 1)
	a, _ := twoServers(t, nil, nil, func(ctx context.Context, in *InboundCall) error {
		got <- seen{in.From(), in.FromDisplay()}
		c, err := in.Answer(ctx, nil)
		if err == nil {
			go func() { <-c.Done(); c.Close() }()
		}
		return err
	})
	for _, tc := range hostileNames {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			call, err := a.Dial(ctx, "pbx", "sip:conv-1@127.0.0.1", DialOptions{DisplayName: tc.typed})
			if err != nil {
				t.Fatalf("call with the name %q: %v", tc.typed, err)
			}
			s := <-got
			if err := call.Close(); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(s.from, "sip:segue@127.0.0.1") {
				t.Errorf("the PBX saw From %q, want the trunk's", s.from)
			}
			if s.display != tc.want {
				t.Errorf("the PBX saw the name %q, want %q", s.display, tc.want)
			}
		})
	}
}

func TestDialRefusesInjectedHeaders(t *testing.T) {
	a := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999"}})
	for _, h := range []map[string]string{
		{"X-Segue-Customer": "Ann\r\nRecord-Route: <sip:attacker.example;lr>"},
		{"X-Segue-Customer": "Ann\nVia: SIP/2.0/UDP attacker.example"},
		{"X-Segue-Customer": "Ann\x00Lee"},
		{"X-Segue-Customer": "Ann\x7fLee"},
		{"X-Segue-Customer": "Ann\xffLee"},
		{"X-Segue-Customer": strings.Repeat("a", maxHeaderValue+1)},
		{"Call-Info": "<https://x.example/>;purpose=info\r\nContact: <sip:attacker.example>"},
		{"User-to-User": "00\r\n"},
		{"X-Segue\r\nVia": "x"},
		{"X-Segue Customer": "x"},
		{"X-Segue:Customer": "x"},
		{"X-Ségue": "x"},
		{"": "x"},
		{"Via": "SIP/2.0/UDP attacker.example"},
		{"Route": "<sip:attacker.example;lr>"},
	} {
		_, err := a.Dial(context.Background(), "pbx", "sip:1@127.0.0.1:5999", DialOptions{Headers: h})
		if !errors.Is(err, ErrHeader) {
			t.Errorf("headers %q: %v, want ErrHeader", h, err)
		}
	}
}

func TestDialHeaderValuesRoundTrip(t *testing.T) {
	headers := map[string]string{
		"X-Segue-Customer": `Evil" <sip:+19005551234@attacker.example>;x="\`,
		"X-Segue-Queue":    "support\tdesk",
		"Call-Info":        "<https://shop.example.com/console/c/c_1>;purpose=info",
		"User-to-User":     "635f31;encoding=hex",
		"X-Unicode":        "Zoë 李 😀",
	}
	got := make(chan map[string]string, 1)
	a, _ := twoServers(t, nil, nil, func(ctx context.Context, in *InboundCall) error {
		h := map[string]string{}
		for k := range headers {
			h[k] = in.Header(k)
		}
		got <- h
		return &StatusError{Code: 486, Reason: "Busy Here"}
	})
	_, err := a.Dial(context.Background(), "pbx", "sip:conv-1@127.0.0.1", DialOptions{Headers: headers})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("dial: %v, want busy", err)
	}
	h := <-got
	for k, v := range headers {
		if h[k] != v {
			t.Errorf("%s: the PBX saw %q, want %q", k, h[k], v)
		}
	}
}

func FuzzQuoteDisplayName(f *testing.F) {
	for _, tc := range hostileNames {
		f.Add(tc.typed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		q := quoteDisplayName(name)
		from := sipmsg.FromHeader{DisplayName: q, Address: sipmsg.Uri{Scheme: "sip", User: "segue", Host: "pbx.example.com"}, Params: sipmsg.NewParams()}
		from.Params.Add("tag", "t1")
		var u sipmsg.Uri
		params := sipmsg.NewParams()
		display, err := sipmsg.ParseAddressValue(from.Value(), &u, &params)
		if err != nil {
			t.Fatalf("%q: %v", from.Value(), err)
		}
		if u.Host != "pbx.example.com" || u.User != "segue" || params.String() != "tag=t1" {
			t.Fatalf("%q parsed as %q with %q", from.Value(), u.String(), params.String())
		}
		if d := unquoteDisplayName(display); d != unquoteDisplayName(q) {
			t.Fatalf("display %q, want %q", d, unquoteDisplayName(q))
		}
	})
}
