package rule

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanText makes free text (a rule's reason, an analyst's explanation) safe
// to store, log and show on a terminal: it removes control characters (C0,
// DEL, C1: ESC sequences, NUL), Unicode format characters (bidi overrides
// such as U+202E, zero-width characters, tag characters) and invalid UTF-8,
// turns line breaks and tabs into spaces, and trims the ends. Printable text
// in any script is kept.
func CleanText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size <= 1:
			// invalid UTF-8: drop the byte
		case r == '\t' || r == '\n' || r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

// IsCleanText reports whether CleanText would leave s as it is.
func IsCleanText(s string) bool { return CleanText(s) == s }
