package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/segue-rtc/segue/configs"
	"github.com/segue-rtc/segue/gateway"
)

// The printed entry, pasted into the example config, makes a config the
// gateway accepts, and its hash is the printed key's.
func TestAPIKeyNewPrintsAKeyAndItsEntry(t *testing.T) {
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"apikey", "new", "crm", "--scopes", "conversations:read,conversations:write"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out.String())
	if !strings.HasPrefix(key, gateway.APIKeyPrefix) || len(key) < 40 {
		t.Fatalf("key %q", key)
	}
	entry := errOut.String()[strings.Index(errOut.String(), "    - name:"):]
	if !strings.Contains(entry, gateway.HashAPIKey(key)) || strings.Contains(entry, key) {
		t.Fatalf("entry:\n%s", entry)
	}
	doc := string(configs.Example) + "\nintegrations:\n  api_keys:\n" + entry
	cfg, err := gateway.ParseConfig([]byte(doc), func(string) (string, bool) { return "x", true })
	if err != nil {
		t.Fatalf("config with the entry: %v", err)
	}
	if k := cfg.Integrations.APIKeys; len(k) != 1 || k[0].Name != "crm" || len(k[0].Scopes) != 2 {
		t.Fatalf("parsed: %+v", k)
	}
}

func TestAPIKeyNewRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"apikey", "new", "crm"},
		{"apikey", "new", "crm", "--scopes", "admin"},
		{"apikey", "new", "no spaces", "--scopes", "conversations:read"},
		{"apikey", "new", "crm", "--scopes", "conversations:read", "--expires", "tomorrow"},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		if err := root.Execute(); err == nil || strings.Contains(out.String(), gateway.APIKeyPrefix) {
			t.Errorf("%v: err %v, printed %q", args, err, out.String())
		}
	}
}
