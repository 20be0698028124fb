package main

import (
	"strings"
	"time"
)

// durationDefault writes a package's default duration as a flag default the
// way an operator would type it: "10m", not time.Duration's "10m0s".
func durationDefault(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
