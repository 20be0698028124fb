package guard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/packetscope/packetscope/bpf"
)

// Remove detaches the guard from every interface it pinned a link for and
// deletes the maps it pinned under pinPath: the documented way to uninstall
// it (`packetscope cleanup`; the guard stops enforcing only then). It acts
// only on a bpffs mount and only on the names the guard pins (its maps, and
// its XDP links link_<interface>): a mistyped path or another tool's pins
// in the same directory are left alone. The directory goes when it is empty
// afterwards. A missing pinPath is not an error.
func Remove(pinPath string) error {
	if pinPath == "" {
		pinPath = DefaultPinPath
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pinPath, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat file system of %s: %w", pinPath, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("remove guard pins: %s is not on a bpffs mount (file system magic %#x): refusing to delete anything there; check --bpf.pin-path", pinPath, st.Type)
	}
	ours, err := pinnedMapNames()
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(pinPath)
	if err != nil {
		return fmt.Errorf("read pin path %s: %w", pinPath, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(pinPath, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "link_"):
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				continue // not a link: not ours
			}
			info, err := l.Info()
			if err != nil || info.Type != link.XDPType {
				_ = l.Close()
				continue
			}
			// Unpinning drops the last reference but ours; closing detaches.
			errs = append(errs, l.Unpin(), l.Close())
		case ours[e.Name()] && !e.IsDir():
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
		}
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, os.ErrNotExist) &&
		!errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EBUSY) {
		errs = append(errs, fmt.Errorf("remove %s: %w", pinPath, err))
	}
	return errors.Join(errs...)
}

// pinnedMapNames are the names of the maps Open pins: those guard.bpf.c
// declares LIBBPF_PIN_BY_NAME.
func pinnedMapNames() (map[string]bool, error) {
	spec, err := bpf.LoadGuardSpec()
	if err != nil {
		return nil, fmt.Errorf("load guard spec: %w", err)
	}
	out := map[string]bool{}
	for name, m := range spec.Maps {
		if m.Pinning == ebpf.PinByName {
			out[name] = true
		}
	}
	return out, nil
}
