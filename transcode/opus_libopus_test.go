//go:build libopus

package transcode_test

import (
	"testing"

	"github.com/segue-rtc/segue/transcode"
)

// TestLibOpusBuild checks that the libopus tag compiles libopus in, as the
// default, next to gopus, so the interop tests really cross the two.
func TestLibOpusBuild(t *testing.T) {
	codecs := transcode.OpusCodecs()
	if len(codecs) != 2 || codecs[0].Name() != "libopus" || codecs[1].Name() != "gopus" {
		t.Fatalf("codecs %v, want libopus then gopus", codecs)
	}
	if transcode.DefaultOpus().Name() != "libopus" || transcode.LibOpus().Name() != "libopus" {
		t.Errorf("default %s", transcode.DefaultOpus().Name())
	}
}
