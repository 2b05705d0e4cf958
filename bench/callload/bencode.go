package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Bencode is the encoding of rtpengine's ng control protocol (a dictionary
// after a cookie and a space, one per UDP datagram). Four types exist:
// byte strings ("4:spam"), integers ("i42e"), lists ("l...e") and
// dictionaries ("d...e", keys are byte strings in sorted order).

// errBencode reports a malformed bencoded value.
var errBencode = errors.New("callload: malformed bencode")

// maxBencodeDepth bounds the nesting the decoder follows, so that a reply
// of nested lists cannot exhaust the stack.
const maxBencodeDepth = 32

// bencode encodes v: a string or []byte, an int or int64, a []string or
// []any, or a map[string]any (its keys sorted, as bencode requires).
func bencode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := bencodeTo(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func bencodeTo(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case string:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.WriteString(x)
	case []byte:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.Write(x)
	case int:
		fmt.Fprintf(b, "i%de", x)
	case int64:
		fmt.Fprintf(b, "i%de", x)
	case []string:
		b.WriteByte('l')
		for _, s := range x {
			_ = bencodeTo(b, s)
		}
		b.WriteByte('e')
	case []any:
		b.WriteByte('l')
		for _, e := range x {
			if err := bencodeTo(b, e); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('d')
		for _, k := range keys {
			_ = bencodeTo(b, k)
			if err := bencodeTo(b, x[k]); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		b.WriteByte('e')
	default:
		return fmt.Errorf("callload: cannot bencode %T", v)
	}
	return nil
}

// bdecode decodes one bencoded value that fills all of p: strings come
// back as string, integers as int64, lists as []any and dictionaries as
// map[string]any.
func bdecode(p []byte) (any, error) {
	v, n, err := bdecodeAt(p, 0, 0)
	if err != nil {
		return nil, err
	}
	if n != len(p) {
		return nil, fmt.Errorf("%w: %d bytes after the value", errBencode, len(p)-n)
	}
	return v, nil
}

func bdecodeAt(p []byte, i, depth int) (any, int, error) {
	if i >= len(p) {
		return nil, i, fmt.Errorf("%w: truncated", errBencode)
	}
	if depth > maxBencodeDepth {
		return nil, i, fmt.Errorf("%w: nested deeper than %d", errBencode, maxBencodeDepth)
	}
	switch c := p[i]; {
	case c == 'i':
		end := bytes.IndexByte(p[i+1:], 'e')
		if end < 0 {
			return nil, i, fmt.Errorf("%w: unterminated integer", errBencode)
		}
		digits := string(p[i+1 : i+1+end])
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || digits == "-0" || (len(digits) > 1 && (digits[0] == '0' || digits[:2] == "-0")) {
			return nil, i, fmt.Errorf("%w: bad integer %q", errBencode, digits)
		}
		return n, i + end + 2, nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(p[i:], ':')
		if colon < 0 {
			return nil, i, fmt.Errorf("%w: string without length", errBencode)
		}
		n, err := strconv.Atoi(string(p[i : i+colon]))
		start := i + colon + 1
		if err != nil || n < 0 || n > len(p)-start {
			return nil, i, fmt.Errorf("%w: bad string length", errBencode)
		}
		return string(p[start : start+n]), start + n, nil
	case c == 'l':
		var out []any
		i++
		for {
			if i >= len(p) {
				return nil, i, fmt.Errorf("%w: unterminated list", errBencode)
			}
			if p[i] == 'e' {
				return out, i + 1, nil
			}
			v, next, err := bdecodeAt(p, i, depth+1)
			if err != nil {
				return nil, i, err
			}
			out = append(out, v)
			i = next
		}
	case c == 'd':
		out := map[string]any{}
		i++
		for {
			if i >= len(p) {
				return nil, i, fmt.Errorf("%w: unterminated dictionary", errBencode)
			}
			if p[i] == 'e' {
				return out, i + 1, nil
			}
			k, next, err := bdecodeAt(p, i, depth+1)
			if err != nil {
				return nil, i, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, i, fmt.Errorf("%w: dictionary key is not a string", errBencode)
			}
			v, next, err := bdecodeAt(p, next, depth+1)
			if err != nil {
				return nil, i, err
			}
			out[key] = v
			i = next
		}
	default:
		return nil, i, fmt.Errorf("%w: unexpected byte %q", errBencode, c)
	}
}
