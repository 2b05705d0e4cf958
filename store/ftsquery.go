package store

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The full-text query language of SearchConversations is FTS5's
// (https://sqlite.org/fts5.html#full_text_query_syntax), so that a query
// means the same with either driver. SQLite parses it itself; for
// PostgreSQL, ftsQuery parses the part integrations are told about
// (words, "phrases", prefix*, AND, OR, NOT and parentheses) and turns it
// into a tsquery built from bound parameters by PostgreSQL's own
// functions, so no text of the query is ever part of the SQL. Column
// filters, NEAR groups, ^ and + are refused with ErrBadQuery.

// Limits on one query, so that hostile input costs little: nesting
// (the parser recurses) and phrases (each a parameter).
const (
	maxQueryDepth   = 16
	maxQueryPhrases = 64
)

// tsqueryExpr is a tsquery expression in PostgreSQL SQL whose text
// arguments are parameters, numbered from the first given to ftsQuery.
type tsqueryExpr struct {
	sql  string
	args []any
}

// ftsQuery parses q and returns the equivalent tsquery expression, its
// parameters numbered from firstParam; a query it cannot parse gives
// ErrBadQuery with the reason.
func ftsQuery(q string, firstParam int) (tsqueryExpr, error) {
	if !validText(q) {
		return tsqueryExpr{}, fmt.Errorf("%w: not valid UTF-8 or holds a NUL byte", ErrBadQuery)
	}
	toks, err := ftsTokens(q)
	if err != nil {
		return tsqueryExpr{}, err
	}
	p := &ftsParser{toks: toks, next: firstParam}
	if len(toks) == 0 {
		return tsqueryExpr{}, fmt.Errorf("%w: empty query", ErrBadQuery)
	}
	sqlText, err := p.or(0)
	if err != nil {
		return tsqueryExpr{}, err
	}
	if p.pos < len(toks) {
		return tsqueryExpr{}, p.errNear()
	}
	return tsqueryExpr{sql: sqlText, args: p.args}, nil
}

// ftsToken is one token of a query: a string (a bareword or a quoted
// phrase) or an operator or punctuation, in op.
type ftsToken struct {
	op     string // "" for a string; else AND, OR, NOT, (, ), *, or a refused character
	text   string
	quoted bool
}

// isBareword reports whether FTS5 takes r as part of a bareword: ASCII
// letters and digits, '_', the substitute character and every
// non-ASCII character.
func isBareword(r rune) bool {
	return r > 127 || r == '_' || r == 0x1a || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

// ftsTokens splits q into tokens.
func ftsTokens(q string) ([]ftsToken, error) {
	var toks []ftsToken
	for i := 0; i < len(q); {
		r, size := utf8.DecodeRuneInString(q[i:])
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			i += size
		case r == '"':
			var b strings.Builder
			j := i + 1
			for {
				k := strings.IndexByte(q[j:], '"')
				if k < 0 {
					return nil, fmt.Errorf("%w: unterminated string %s", ErrBadQuery, q[i:])
				}
				b.WriteString(q[j : j+k])
				j += k + 1
				if j < len(q) && q[j] == '"' { // "" is a quote inside the string
					b.WriteByte('"')
					j++
					continue
				}
				break
			}
			toks = append(toks, ftsToken{text: b.String(), quoted: true})
			i = j
		case isBareword(r):
			j := i
			for j < len(q) {
				r, size := utf8.DecodeRuneInString(q[j:])
				if !isBareword(r) {
					break
				}
				j += size
			}
			word := q[i:j]
			switch word {
			case "AND", "OR", "NOT":
				toks = append(toks, ftsToken{op: word})
			default:
				toks = append(toks, ftsToken{text: word})
			}
			i = j
		default:
			toks = append(toks, ftsToken{op: string(r)})
			i += size
		}
	}
	return toks, nil
}

// ftsParser is a recursive-descent parser over tokens; precedence, from
// the loosest: OR, AND (written or implied by juxtaposition), NOT.
type ftsParser struct {
	toks []ftsToken
	pos  int
	args []any
	next int // the next parameter's number
	// qmarks writes each parameter as ?, to be numbered with the rest of
	// the statement, rather than as $next.
	qmarks  bool
	phrases int
}

func (p *ftsParser) peek() (ftsToken, bool) {
	if p.pos >= len(p.toks) {
		return ftsToken{}, false
	}
	return p.toks[p.pos], true
}

func (p *ftsParser) errNear() error {
	t, ok := p.peek()
	if !ok {
		return fmt.Errorf("%w: incomplete query", ErrBadQuery)
	}
	if t.op == "" {
		return fmt.Errorf("%w: syntax error near %q", ErrBadQuery, t.text)
	}
	return fmt.Errorf("%w: syntax error near %q", ErrBadQuery, t.op)
}

func (p *ftsParser) or(depth int) (string, error) { return p.chain(depth, p.and, "OR", " || ", false) }

func (p *ftsParser) and(depth int) (string, error) { return p.chain(depth, p.not, "AND", " && ", true) }

// not is FTS5's binary NOT: "a NOT b" matches a without b.
func (p *ftsParser) not(depth int) (string, error) {
	return p.chain(depth, p.primary, "NOT", " && !!", false)
}

// chain parses operands joined by op, left to right, into tsquery
// operator join; implied also takes operands side by side (FTS5's
// implicit AND), up to an OR or a closing parenthesis.
func (p *ftsParser) chain(depth int, operand func(int) (string, error), op, join string, implied bool) (string, error) {
	left, err := operand(depth)
	if err != nil {
		return "", err
	}
	for {
		t, ok := p.peek()
		switch {
		case !ok:
			return left, nil
		case t.op == op:
			p.pos++
		case !implied || t.op == "OR" || t.op == ")":
			return left, nil
		}
		right, err := operand(depth)
		if err != nil {
			return "", err
		}
		left = "(" + left + join + right + ")"
	}
}

func (p *ftsParser) primary(depth int) (string, error) {
	t, ok := p.peek()
	if !ok {
		return "", p.errNear()
	}
	switch {
	case t.op == "(":
		if depth >= maxQueryDepth {
			return "", fmt.Errorf("%w: nested deeper than %d", ErrBadQuery, maxQueryDepth)
		}
		p.pos++
		inner, err := p.or(depth + 1)
		if err != nil {
			return "", err
		}
		if t, ok := p.peek(); !ok || t.op != ")" {
			return "", p.errNear()
		}
		p.pos++
		return inner, nil
	case t.op == "" && !t.quoted && t.text == "NEAR" && p.pos+1 < len(p.toks) && p.toks[p.pos+1].op == "(":
		return "", fmt.Errorf("%w: NEAR groups are not supported", ErrBadQuery)
	case t.op == "":
		p.pos++
		if nt, ok := p.peek(); ok {
			switch nt.op {
			case ":":
				return "", fmt.Errorf("%w: column filters are not supported", ErrBadQuery)
			case "+":
				return "", fmt.Errorf("%w: + between phrases is not supported; write the words in one \"phrase\"", ErrBadQuery)
			}
		}
		prefix := false
		if nt, ok := p.peek(); ok && nt.op == "*" {
			prefix = true
			p.pos++
		}
		return p.phrase(t.text, prefix)
	}
	return "", p.errNear()
}

// phrase is the tsquery of one string: its words in sequence, tokenized
// by PostgreSQL as it tokenized the messages; with prefix, the last word
// matches any word it begins (FTS5's "one two thr"*).
func (p *ftsParser) phrase(text string, prefix bool) (string, error) {
	if p.phrases++; p.phrases > maxQueryPhrases {
		return "", fmt.Errorf("%w: more than %d words or phrases", ErrBadQuery, maxQueryPhrases)
	}
	last := ""
	if prefix {
		cut := strings.LastIndexFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		text, last = text[:cut+1], text[cut+1:]
	}
	var parts []string
	if strings.TrimSpace(text) != "" || last == "" {
		parts = append(parts, "phraseto_tsquery('simple', "+p.param(text)+")")
	}
	if last != "" {
		// A lexeme quoted for to_tsquery, whose 'simple' dictionary
		// lower-cases it; letters and digits need no escaping.
		parts = append(parts, "to_tsquery('simple', "+p.param("'"+last+"':*")+")")
	}
	if len(parts) == 2 {
		return "tsquery_phrase(" + parts[0] + ", " + parts[1] + ")", nil
	}
	return parts[0], nil
}

// param adds v to the parameters and returns its placeholder.
func (p *ftsParser) param(v string) string {
	p.args = append(p.args, v)
	if p.qmarks {
		return "?"
	}
	p.next++
	return fmt.Sprintf("$%d", p.next-1)
}

// keywordQuery is the tsquery of ConversationQuery.Keywords (valid
// text), as SQLite
// reads them (ftsWords): every word, as the start of a word, in one
// message. Each word is a phrase with a prefix (what PostgreSQL's parser
// splits it into, in order, the last one a prefix), and its text never
// reaches the SQL: the placeholders are ?, numbered with the statement's.
func keywordQuery(words []string) (tsqueryExpr, error) {
	p := &ftsParser{qmarks: true}
	terms := make([]string, 0, len(words))
	for _, w := range words {
		// FTS5 ignores what follows the last letter or digit of a prefix
		// phrase; phrase cuts the prefix off at the last other character.
		t, err := p.phrase(strings.TrimRightFunc(w, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }), true)
		if err != nil {
			return tsqueryExpr{}, err
		}
		terms = append(terms, t)
	}
	return tsqueryExpr{sql: "(" + strings.Join(terms, " && ") + ")", args: p.args}, nil
}
