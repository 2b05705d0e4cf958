//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// segueBin is the segue binary built once by TestMain for every test.
var segueBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "segue-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	if bin := os.Getenv("SEGUE_E2E_BIN"); bin != "" {
		segueBin = bin
		defer stopBrowser()
		defer stopVoiceBrowser()
		return m.Run()
	}
	segueBin = filepath.Join(dir, "segue")
	build := exec.Command("go", "build", "-o", segueBin, "./cmd/segue")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build segue: %v\n%s", err, out)
		return 1
	}
	defer stopBrowser()
	defer stopVoiceBrowser()
	return m.Run()
}
