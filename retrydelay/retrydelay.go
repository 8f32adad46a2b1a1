// Package retrydelay parses and evaluates the arithmetic expressions that the
// QStash Upstash-Retry-Delay header carries.
//
// An expression computes the delay before a retry in milliseconds. Its only
// variable is retried, the number of retries already made (0 before the
// first retry). The grammar, from lowest to highest precedence:
//
//	sum     = product { ("+" | "-") product }
//	product = unary { ("*" | "/") unary }
//	unary   = "-" unary | primary
//	primary = number | "retried" | function "(" sum { "," sum } ")" | "(" sum ")"
//	number  = digits [ "." digits ]
//
// The functions are pow(x, y), exp(x), sqrt(x), abs(x), floor(x), ceil(x),
// round(x), min(x, y) and max(x, y). Spaces, tabs and line breaks may appear
// between tokens. Arithmetic follows IEEE 754, so dividing by zero yields an
// infinity or NaN instead of failing.
package retrydelay

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on the source text, which keep parsing and evaluation cheap for
// expressions sent by API clients.
const (
	// MaxLength is the maximum length of an expression in bytes.
	MaxLength = 1000

	// MaxDepth is the maximum nesting depth. Each parenthesized group,
	// function call and unary minus adds one level.
	MaxDepth = 64
)

// MaxDelay is the upper bound that Delay applies. QStash caps each delay of
// its default retry backoff at one day
// (https://upstash.com/docs/qstash/features/retry), and Ferry applies the
// same cap to custom expressions.
const MaxDelay = 24 * time.Hour

// Expr is a parsed retry delay expression. Create one with Parse. An Expr is
// immutable and safe for concurrent use.
type Expr struct {
	source string
	root   node
}

// Parse parses s as a retry delay expression. The error text starts with
// `invalid retry delay expression` and the quoted input, so an API can show
// it to the client. Positions in errors count bytes from 1.
func Parse(s string) (*Expr, error) {
	if len(s) > MaxLength {
		return nil, fmt.Errorf("invalid retry delay expression: length is %d bytes, which exceeds the maximum of %d", len(s), MaxLength)
	}

	root, err := parseSource(s)
	if err != nil {
		return nil, fmt.Errorf("invalid retry delay expression %q: %w", s, err)
	}
	return &Expr{source: s, root: root}, nil
}

// String returns the source text exactly as it was passed to Parse.
func (e *Expr) String() string {
	return e.source
}

// Eval returns the value of the expression in milliseconds for the given
// retry count. The result may be negative, infinite or NaN, and Delay turns
// it into a usable duration.
func (e *Expr) Eval(retried int) float64 {
	return e.root.eval(float64(retried))
}

// Delay returns the wait before the next retry: the value of the expression
// in milliseconds, clamped to [0, MaxDelay]. NaN and negative values give 0,
// and +Inf or values above MaxDelay give MaxDelay.
func (e *Expr) Delay(retried int) time.Duration {
	milliseconds := e.Eval(retried)

	if math.IsNaN(milliseconds) || milliseconds <= 0 {
		return 0
	}
	if milliseconds >= float64(MaxDelay/time.Millisecond) {
		return MaxDelay
	}
	return time.Duration(milliseconds * float64(time.Millisecond))
}

// Syntax tree.

type node interface {
	eval(retried float64) float64
}

type numberNode float64

func (n numberNode) eval(float64) float64 { return float64(n) }

type retriedNode struct{}

func (retriedNode) eval(retried float64) float64 { return retried }

type negationNode struct {
	operand node
}

func (n negationNode) eval(retried float64) float64 { return -n.operand.eval(retried) }

type binaryNode struct {
	operator    byte
	left, right node
}

func (n binaryNode) eval(retried float64) float64 {
	left := n.left.eval(retried)
	right := n.right.eval(retried)

	switch n.operator {
	case '+':
		return left + right
	case '-':
		return left - right
	case '*':
		return left * right
	default:
		return left / right
	}
}

type callNode struct {
	function  function
	arguments []node
}

func (n callNode) eval(retried float64) float64 {
	x := n.arguments[0].eval(retried)
	if n.function.arity == 1 {
		return n.function.apply(x, 0)
	}
	return n.function.apply(x, n.arguments[1].eval(retried))
}

// function is a built-in function. Functions of one argument ignore y.
type function struct {
	arity int
	apply func(x, y float64) float64
}

// functionNames lists the built-in functions in the order error messages
// show them.
var functionNames = []string{"pow", "exp", "sqrt", "abs", "floor", "ceil", "round", "min", "max"}

var functions = map[string]function{
	"pow":   {2, math.Pow},
	"exp":   {1, unary(math.Exp)},
	"sqrt":  {1, unary(math.Sqrt)},
	"abs":   {1, unary(math.Abs)},
	"floor": {1, unary(math.Floor)},
	"ceil":  {1, unary(math.Ceil)},
	// NOTE: math.Round rounds halves away from zero, so round(-2.5) is -3,
	// where JavaScript's Math.round gives -2. Which rule QStash uses is not
	// verified. The two differ only for negative halves.
	"round": {1, unary(math.Round)},
	"min":   {2, math.Min},
	"max":   {2, math.Max},
}

func unary(f func(float64) float64) func(x, y float64) float64 {
	return func(x, _ float64) float64 { return f(x) }
}

// Tokens.

type tokenKind int

const (
	tokenEnd tokenKind = iota
	tokenNumber
	tokenIdentifier
	tokenPunctuation
)

type token struct {
	kind     tokenKind
	text     string
	position int // byte offset in the source, counted from 1
}

// describe names the token for error messages.
func (t token) describe() string {
	switch t.kind {
	case tokenEnd:
		return "end of input"
	case tokenNumber:
		return fmt.Sprintf("number %q", t.text)
	case tokenIdentifier:
		return fmt.Sprintf("identifier %q", t.text)
	default:
		return strconv.Quote(t.text)
	}
}

// tokenize splits s into tokens and appends a tokenEnd token.
func tokenize(s string) ([]token, error) {
	var tokens []token
	i := 0
	for i < len(s) {
		c := s[i]
		start := i

		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue

		case isDigit(c) || c == '.':
			for i < len(s) && (isDigit(s[i]) || s[i] == '.') {
				i++
			}
			text := s[start:i]
			if !isDecimal(text) {
				return nil, fmt.Errorf("invalid number %q at position %d; write numbers as digits with an optional fraction, e.g. 1000 or 1.5", text, start+1)
			}
			tokens = append(tokens, token{tokenNumber, text, start + 1})

		case isLetter(c):
			for i < len(s) && (isLetter(s[i]) || isDigit(s[i])) {
				i++
			}
			tokens = append(tokens, token{tokenIdentifier, s[start:i], start + 1})

		case strings.IndexByte("+-*/(),", c) >= 0:
			i++
			tokens = append(tokens, token{tokenPunctuation, s[start:i], start + 1})

		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError {
				return nil, fmt.Errorf("invalid UTF-8 encoding at position %d", start+1)
			}
			return nil, fmt.Errorf("unexpected character %q at position %d", string(r), start+1)
		}
	}
	return append(tokens, token{tokenEnd, "", len(s) + 1}), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

// isDecimal reports whether text is digits, optionally followed by a dot
// and more digits.
func isDecimal(text string) bool {
	whole, fraction, hasDot := strings.Cut(text, ".")
	if whole == "" || strings.Contains(whole, ".") {
		return false
	}
	if !hasDot {
		return true
	}
	return fraction != "" && !strings.Contains(fraction, ".")
}

// Parser.

type parser struct {
	tokens []token
	next   int
	depth  int
}

// parseSource parses a whole expression. Its errors omit the source text,
// which Parse adds.
func parseSource(s string) (node, error) {
	tokens, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	if tokens[0].kind == tokenEnd {
		return nil, errors.New("expression is empty; use a number of milliseconds or a formula such as pow(2, retried) * 1000")
	}

	p := &parser{tokens: tokens}
	root, err := p.parseSum()
	if err != nil {
		return nil, err
	}

	switch t := p.peek(); {
	case t.kind == tokenEnd:
		return root, nil
	case t.text == ")":
		return nil, fmt.Errorf(`unexpected ")" at position %d without a matching "("`, t.position)
	default:
		return nil, fmt.Errorf("unexpected %s at position %d; expected an operator or end of input", t.describe(), t.position)
	}
}

func (p *parser) peek() token {
	return p.tokens[p.next]
}

func (p *parser) advance() token {
	t := p.tokens[p.next]
	if t.kind != tokenEnd {
		p.next++
	}
	return t
}

// isPunctuation reports whether the next token is the punctuation text.
func (p *parser) isPunctuation(text string) bool {
	t := p.peek()
	return t.kind == tokenPunctuation && t.text == text
}

// enter adds a nesting level for the construct that starts at t.
func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > MaxDepth {
		return fmt.Errorf("nesting at position %d is deeper than the maximum of %d levels", t.position, MaxDepth)
	}
	return nil
}

func (p *parser) leave() {
	p.depth--
}

func (p *parser) parseSum() (node, error) {
	left, err := p.parseProduct()
	if err != nil {
		return nil, err
	}

	for p.isPunctuation("+") || p.isPunctuation("-") {
		operator := p.advance().text[0]
		right, err := p.parseProduct()
		if err != nil {
			return nil, err
		}
		left = binaryNode{operator: operator, left: left, right: right}
	}
	return left, nil
}

func (p *parser) parseProduct() (node, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}

	for p.isPunctuation("*") || p.isPunctuation("/") {
		operator := p.advance().text[0]
		right, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		left = binaryNode{operator: operator, left: left, right: right}
	}
	return left, nil
}

func (p *parser) parseUnary() (node, error) {
	if !p.isPunctuation("-") {
		return p.parsePrimary()
	}

	minus := p.advance()
	if err := p.enter(minus); err != nil {
		return nil, err
	}
	defer p.leave()

	operand, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	return negationNode{operand: operand}, nil
}

func (p *parser) parsePrimary() (node, error) {
	t := p.peek()

	switch {
	case t.kind == tokenNumber:
		p.advance()
		return parseNumber(t)

	case t.kind == tokenIdentifier:
		p.advance()
		return p.parseIdentifier(t)

	case t.kind == tokenPunctuation && t.text == "(":
		p.advance()
		return p.parseGroup(t)

	default:
		return nil, fmt.Errorf("unexpected %s at position %d; expected a number, retried, a function call or \"(\"", t.describe(), t.position)
	}
}

func parseNumber(t token) (node, error) {
	value, err := strconv.ParseFloat(t.text, 64)
	if err != nil {
		return nil, fmt.Errorf("number %q at position %d is too large", t.text, t.position)
	}
	return numberNode(value), nil
}

// parseGroup parses the expression and the closing ")" that follow the
// opening parenthesis open.
func (p *parser) parseGroup(open token) (node, error) {
	if err := p.enter(open); err != nil {
		return nil, err
	}
	defer p.leave()

	inner, err := p.parseSum()
	if err != nil {
		return nil, err
	}
	if err := p.expectClose(open); err != nil {
		return nil, err
	}
	return inner, nil
}

// expectClose consumes the ")" that closes open.
func (p *parser) expectClose(open token) error {
	t := p.peek()
	if t.kind == tokenEnd {
		return fmt.Errorf(`missing ")" to close "(" at position %d`, open.position)
	}
	if t.text != ")" {
		return fmt.Errorf(`unexpected %s at position %d; expected ")" to close "(" at position %d`, t.describe(), t.position, open.position)
	}
	p.advance()
	return nil
}

func (p *parser) parseIdentifier(name token) (node, error) {
	if name.text == "retried" {
		if p.isPunctuation("(") {
			return nil, fmt.Errorf("retried at position %d is a variable and cannot be called", name.position)
		}
		return retriedNode{}, nil
	}

	fn, known := functions[name.text]
	if !p.isPunctuation("(") {
		if known {
			return nil, fmt.Errorf(`missing "(" after function %s at position %d`, name.text, name.position)
		}
		return nil, fmt.Errorf("unknown identifier %q at position %d; use the variable retried or one of the functions %s", name.text, name.position, strings.Join(functionNames, ", "))
	}
	if !known {
		return nil, fmt.Errorf("unknown function %q at position %d; allowed functions are %s", name.text, name.position, strings.Join(functionNames, ", "))
	}

	open := p.advance()
	if err := p.enter(open); err != nil {
		return nil, err
	}
	defer p.leave()

	arguments, err := p.parseArguments(open)
	if err != nil {
		return nil, err
	}
	if len(arguments) != fn.arity {
		return nil, fmt.Errorf("%s takes %s, got %d", name.text, pluralArguments(fn.arity), len(arguments))
	}
	return callNode{function: fn, arguments: arguments}, nil
}

// parseArguments parses a comma-separated argument list up to and including
// the ")" that closes open. An empty list is allowed so that the arity check
// can report it.
func (p *parser) parseArguments(open token) ([]node, error) {
	var arguments []node
	if p.isPunctuation(")") {
		p.advance()
		return arguments, nil
	}

	for {
		argument, err := p.parseSum()
		if err != nil {
			return nil, err
		}
		arguments = append(arguments, argument)

		if !p.isPunctuation(",") {
			break
		}
		p.advance()
	}

	t := p.peek()
	if t.kind != tokenEnd && t.text != ")" {
		return nil, fmt.Errorf(`unexpected %s at position %d; expected "," or ")"`, t.describe(), t.position)
	}
	if err := p.expectClose(open); err != nil {
		return nil, err
	}
	return arguments, nil
}

func pluralArguments(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}
