package main

import (
	"strings"
	"testing"
)

// TestDemoPhoneCommandRefuses: segue demo-phone will not listen beyond
// loopback, and names the problem.
func TestDemoPhoneCommandRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo-phone", "--listen", "0.0.0.0:5080"}, `listen: "0.0.0.0:5080": demophone: listen must be a loopback address`},
		{[]string{"demo-phone", "--listen", "192.0.2.1:5080"}, `must be a loopback address`},
		{[]string{"demo-phone", "--listen", "127.0.0.1:0", "--greeting", "hello.mp3"}, `greeting: "hello.mp3"`},
		{[]string{"demo-phone", "extra"}, `unknown command "extra"`},
	} {
		out, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: %v\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
}
