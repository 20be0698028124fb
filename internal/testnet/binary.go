package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// packetscopeImportPath builds the binary from any package of the module.
const packetscopeImportPath = "github.com/packetscope/packetscope/cmd/packetscope"

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// PacketscopeBinary returns the packetscope binary the live tests run:
// PACKETSCOPE_BIN when set (an already built binary, e.g. make's
// bin/packetscope), else one built once per test binary. A test package
// that uses it calls RemovePacketscopeBinary from its TestMain.
func PacketscopeBinary(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv("PACKETSCOPE_BIN"); bin != "" {
		return bin
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "packetscope-bin-")
		if built.err != nil {
			return
		}
		// World-readable, so a test can run it as an unprivileged user.
		if built.err = os.Chmod(built.dir, 0o755); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "packetscope")
		if out, err := exec.Command("go", "build", "-o", built.bin, packetscopeImportPath).CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build %s: %v\n%s", packetscopeImportPath, err, out)
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.bin
}

// RemovePacketscopeBinary removes the binary PacketscopeBinary built, if it
// built one.
func RemovePacketscopeBinary() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}
