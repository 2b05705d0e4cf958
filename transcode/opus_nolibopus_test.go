//go:build !libopus

package transcode_test

import (
	"testing"

	"github.com/segue-rtc/segue/transcode"
)

// TestDefaultOpusIsPureGo checks that the default build uses gopus only.
func TestDefaultOpusIsPureGo(t *testing.T) {
	codecs := transcode.OpusCodecs()
	if len(codecs) != 1 || codecs[0].Name() != "gopus" || transcode.DefaultOpus().Name() != "gopus" {
		t.Fatalf("codecs %v, want gopus alone", codecs)
	}
}
