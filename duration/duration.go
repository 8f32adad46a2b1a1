// Package duration parses and formats the relative durations that QStash
// headers such as Upstash-Delay and Upstash-Timeout carry.
//
// A duration is one or more groups of a non-negative decimal integer followed
// by a unit: s (seconds), m (minutes), h (hours) or d (days of 24 hours).
// Groups may appear in any order and may repeat, and their values add up, so
// "1d10h30m", "90s" and "30m30m" are all valid. Leading and trailing
// whitespace is ignored. Signs, decimals, bare numbers and any other unit are
// rejected.
package duration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Max is the largest duration that Parse accepts: 36500 days, which is about
// 100 years. The limit keeps every sum far below the range of time.Duration,
// so no input can wrap around.
const Max = 36500 * 24 * time.Hour

// day is the length of the d unit.
const day = 24 * time.Hour

// syntaxHint ends every syntax error with the accepted form.
const syntaxHint = "use a number followed by s, m, h or d, e.g. 30s or 1d10h30m"

// units maps each unit letter to its length.
var units = map[string]time.Duration{
	"s": time.Second,
	"m": time.Minute,
	"h": time.Hour,
	"d": day,
}

// Parse returns the duration that s denotes. The error text starts with
// `invalid duration` and the trimmed input, so an API can show it to the
// client after the header name.
func Parse(s string) (time.Duration, error) {
	value := strings.TrimSpace(s)
	if value == "" {
		return 0, syntaxError(value, "value is empty")
	}

	var total time.Duration
	rest := value
	for rest != "" {
		number, unit, remainder, err := nextGroup(rest)
		if err != nil {
			return 0, syntaxError(value, err.Error())
		}

		part, ok := multiply(number, unit)
		if !ok || total > Max-part {
			return 0, rangeError(value)
		}
		total += part
		rest = remainder
	}
	return total, nil
}

// nextGroup splits the first <number><unit> group off s. The number is
// returned as written so that multiply can detect overflow.
func nextGroup(s string) (number string, unit time.Duration, rest string, err error) {
	digits := leadingRun(s, isDigit)
	if digits == "" {
		return "", 0, "", describeMissingNumber(s)
	}
	rest = s[len(digits):]

	if strings.HasPrefix(rest, ".") {
		decimal := digits + leadingRun(rest, isDigitOrDot)
		return "", 0, "", fmt.Errorf("decimal number %q is not allowed", decimal)
	}

	name := leadingRun(rest, isLetter)
	if name == "" {
		if rest == "" {
			return "", 0, "", fmt.Errorf("missing unit after %q", digits)
		}
		return "", 0, "", unexpectedCharacter(rest)
	}

	unit, ok := units[name]
	if !ok {
		return "", 0, "", fmt.Errorf("unknown unit %q", name)
	}
	return digits, unit, rest[len(name):], nil
}

// describeMissingNumber returns the error for s, which does not start with a
// digit where a number is expected.
func describeMissingNumber(s string) error {
	switch {
	case s[0] == '-' || s[0] == '+':
		return fmt.Errorf("sign %q is not allowed", s[:1])
	case s[0] == '.':
		decimal := leadingRun(s, isDigitOrDot)
		return fmt.Errorf("decimal number %q is not allowed", decimal)
	}

	if name := leadingRun(s, isLetter); name != "" {
		return fmt.Errorf("missing number before unit %q", name)
	}
	return unexpectedCharacter(s)
}

// unexpectedCharacter returns the error for the first character of s.
func unexpectedCharacter(s string) error {
	r, _ := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return errors.New("invalid UTF-8 encoding")
	}
	return fmt.Errorf("unexpected character %q", string(r))
}

// multiply returns number*unit, or false when the product exceeds Max.
func multiply(number string, unit time.Duration) (time.Duration, bool) {
	n, err := strconv.ParseUint(number, 10, 64)
	if err != nil || n > uint64(Max/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// leadingRun returns the longest prefix of s whose runes all satisfy match.
func leadingRun(s string, match func(rune) bool) string {
	for i, r := range s {
		if !match(r) {
			return s[:i]
		}
	}
	return s
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func isDigitOrDot(r rune) bool { return isDigit(r) || r == '.' }

// isLetter accepts any Unicode letter, so that a unit such as "µs" is
// reported whole as an unknown unit.
func isLetter(r rune) bool { return unicode.IsLetter(r) }

func syntaxError(value, reason string) error {
	return fmt.Errorf("invalid duration %q: %s; %s", value, reason, syntaxHint)
}

func rangeError(value string) error {
	return fmt.Errorf("invalid duration %q: exceeds the maximum of %s (about 100 years)", value, Format(Max))
}

// Format renders d in the syntax that Parse accepts, largest unit first and
// without zero groups: 90 seconds is "1m30s" and zero is "0s". It truncates d
// to whole seconds. Negative durations render as "0s", because the syntax has
// no sign.
func Format(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}

	var b strings.Builder
	remaining := d.Truncate(time.Second)
	for _, unit := range []struct {
		length time.Duration
		name   string
	}{
		{day, "d"},
		{time.Hour, "h"},
		{time.Minute, "m"},
		{time.Second, "s"},
	} {
		count := remaining / unit.length
		if count == 0 {
			continue
		}
		b.WriteString(strconv.FormatInt(int64(count), 10))
		b.WriteString(unit.name)
		remaining -= count * unit.length
	}
	return b.String()
}
