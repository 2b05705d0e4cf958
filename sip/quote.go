package sip

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// maxDisplayName bounds a From display name, in characters, before
	// escaping: enough for any desk phone's screen.
	maxDisplayName = 64
	// maxHeaderValue bounds one caller-supplied header value, in bytes.
	maxHeaderValue = 1024
)

// quoteDisplayName returns what goes between the double quotes of a
// display-name (RFC 3261 §25.1 quoted-string): s without control
// characters (CR, LF and NUL included, tabs become spaces), without
// Unicode bidirectional overrides, bounded to maxDisplayName characters,
// and with '"' and '\' escaped as quoted-pairs. UTF-8 outside ASCII is
// kept (qdtext allows UTF8-NONASCII); invalid UTF-8 is dropped. sipgo
// writes DisplayName between quotes as it is, so a From or To header
// built from the result cannot end the quoted-string early, whatever the
// customer typed.
func quoteDisplayName(s string) string {
	clean := make([]rune, 0, len(s))
	for i, w := 0, 0; i < len(s); i += w {
		var r rune
		r, w = utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w <= 1:
			continue
		case r == '\t':
			r = ' '
		case unicode.IsControl(r) || isBidiControl(r):
			continue
		}
		clean = append(clean, r)
	}
	name := strings.TrimSpace(string(clean))
	if r := []rune(name); len(r) > maxDisplayName {
		name = strings.TrimSpace(string(r[:maxDisplayName]))
	}
	var b strings.Builder
	for _, r := range name {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unquoteDisplayName undoes the quoted-pairs of a display name as sipgo's
// parser returns it (the text between the quotes, escapes kept).
func unquoteDisplayName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	escaped := false
	for _, r := range s {
		if r == '\\' && !escaped {
			escaped = true
			continue
		}
		escaped = false
		b.WriteRune(r)
	}
	return b.String()
}

// isBidiControl reports the Unicode bidirectional formatting characters
// (embeddings, overrides, isolates and marks), which would let a name
// display reversed or reordered on a phone's screen.
func isBidiControl(r rune) bool {
	return r == '\u200e' || r == '\u200f' || r == '\u061c' ||
		(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// isToken reports whether s is a non-empty RFC 3261 §25.1 token, the
// grammar of a header field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkHeaderValue refuses a header value that could end the header line
// or the message (CR, LF), hide from parsers (NUL and other control
// characters; a tab is allowed as whitespace), is not UTF-8, or is longer
// than maxHeaderValue.
func checkHeaderValue(v string) error {
	if len(v) > maxHeaderValue {
		return fmt.Errorf("longer than %d bytes", maxHeaderValue)
	}
	if !utf8.ValidString(v) {
		return errors.New("not UTF-8")
	}
	for _, r := range v {
		if r != '\t' && unicode.IsControl(r) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}
