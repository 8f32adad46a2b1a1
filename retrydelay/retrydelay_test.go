package retrydelay

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestEval(t *testing.T) {
	tests := []struct {
		source  string
		retried int
		want    float64
	}{
		{"1000", 0, 1000},
		{"1000", 7, 1000},
		{"1000 * (1 + retried)", 2, 3000},
		{"pow(2, retried) * 1000", 3, 8000},
		{"max(1000, pow(2, retried) * 100)", 0, 1000},
		{"max(1000, pow(2, retried) * 100)", 5, 3200},
		{"min(5000, 1000 * retried)", 9, 5000},
		{"1.5", 0, 1.5},
		{"0.25 * 4", 0, 1},
		{"1 + 2 * 3", 0, 7},
		{"(1 + 2) * 3", 0, 9},
		{"10 - 4 - 3", 0, 3},
		{"24 / 4 / 2", 0, 3},
		{"-5 + 10", 0, 5},
		{"--5", 0, 5},
		{"2 * -3", 0, -6},
		{"-retried", 4, -4},
		{"exp(0)", 0, 1},
		{"sqrt(16)", 0, 4},
		{"abs(-3)", 0, 3},
		{"floor(2.7)", 0, 2},
		{"ceil(2.1)", 0, 3},
		{"round(2.5)", 0, 3},
		{"round(2.4)", 0, 2},
		{" \t1000\n", 0, 1000},
		{"pow ( 2 , retried )", 10, 1024},
		{"1000*(1+retried)", 1, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			expr, err := Parse(tt.source)
			if err != nil {
				t.Fatalf("Parse(%q) error = %v, want nil", tt.source, err)
			}

			got := expr.Eval(tt.retried)
			if got != tt.want {
				t.Errorf("Parse(%q).Eval(%d) = %v, want %v", tt.source, tt.retried, got, tt.want)
			}
		})
	}
}

func TestEvalSpecialValues(t *testing.T) {
	tests := []struct {
		source string
		check  func(float64) bool
		want   string
	}{
		{"1 / 0", func(v float64) bool { return math.IsInf(v, 1) }, "+Inf"},
		{"-1 / 0", func(v float64) bool { return math.IsInf(v, -1) }, "-Inf"},
		{"0 / 0", math.IsNaN, "NaN"},
		{"sqrt(-1)", math.IsNaN, "NaN"},
		{"pow(10, 400)", func(v float64) bool { return math.IsInf(v, 1) }, "+Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			expr, err := Parse(tt.source)
			if err != nil {
				t.Fatalf("Parse(%q) error = %v, want nil", tt.source, err)
			}

			got := expr.Eval(0)
			if !tt.check(got) {
				t.Errorf("Parse(%q).Eval(0) = %v, want %s", tt.source, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const prefix = "invalid retry delay expression "
	tests := []struct {
		source string
		want   string
	}{
		{"", prefix + `"": expression is empty; use a number of milliseconds or a formula such as pow(2, retried) * 1000`},
		{"  ", prefix + `"  ": expression is empty; use a number of milliseconds or a formula such as pow(2, retried) * 1000`},
		{"pow(2)", prefix + `"pow(2)": pow takes 2 arguments, got 1`},
		{"sqrt(1, 2)", prefix + `"sqrt(1, 2)": sqrt takes 1 argument, got 2`},
		{"max()", prefix + `"max()": max takes 2 arguments, got 0`},
		{"foo(1)", prefix + `"foo(1)": unknown function "foo" at position 1; allowed functions are pow, exp, sqrt, abs, floor, ceil, round, min, max`},
		{"1000 * x", prefix + `"1000 * x": unknown identifier "x" at position 8; use the variable retried or one of the functions pow, exp, sqrt, abs, floor, ceil, round, min, max`},
		{"Pow(2, 3)", prefix + `"Pow(2, 3)": unknown function "Pow" at position 1; allowed functions are pow, exp, sqrt, abs, floor, ceil, round, min, max`},
		{"retried(1)", prefix + `"retried(1)": retried at position 1 is a variable and cannot be called`},
		{"pow + 1", prefix + `"pow + 1": missing "(" after function pow at position 1`},
		{"(1 + 2", prefix + `"(1 + 2": missing ")" to close "(" at position 1`},
		{"pow(2, 3", prefix + `"pow(2, 3": missing ")" to close "(" at position 4`},
		{"1 + 2)", prefix + `"1 + 2)": unexpected ")" at position 6 without a matching "("`},
		{"(1 2)", prefix + `"(1 2)": unexpected number "2" at position 4; expected ")" to close "(" at position 1`},
		{"pow(2 3)", prefix + `"pow(2 3)": unexpected number "3" at position 7; expected "," or ")"`},
		{"1000 2000", prefix + `"1000 2000": unexpected number "2000" at position 6; expected an operator or end of input`},
		{"1e3", prefix + `"1e3": unexpected identifier "e3" at position 2; expected an operator or end of input`},
		{"1 +", prefix + `"1 +": unexpected end of input at position 4; expected a number, retried, a function call or "("`},
		{"+1", prefix + `"+1": unexpected "+" at position 1; expected a number, retried, a function call or "("`},
		{"()", prefix + `"()": unexpected ")" at position 2; expected a number, retried, a function call or "("`},
		{"pow(1,)", prefix + `"pow(1,)": unexpected ")" at position 7; expected a number, retried, a function call or "("`},
		{"1.", prefix + `"1.": invalid number "1." at position 1; write numbers as digits with an optional fraction, e.g. 1000 or 1.5`},
		{".5", prefix + `".5": invalid number ".5" at position 1; write numbers as digits with an optional fraction, e.g. 1000 or 1.5`},
		{"1.2.3", prefix + `"1.2.3": invalid number "1.2.3" at position 1; write numbers as digits with an optional fraction, e.g. 1000 or 1.5`},
		{"2 ^ 3", prefix + `"2 ^ 3": unexpected character "^" at position 3`},
		{"2 × 3", prefix + `"2 × 3": unexpected character "×" at position 3`},
		{"2 \xff 3", prefix + `"2 \xff 3": invalid UTF-8 encoding at position 3`},
		{"1" + strings.Repeat("0", 400), prefix + `"1` + strings.Repeat("0", 400) + `": number "1` + strings.Repeat("0", 400) + `" at position 1 is too large`},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			expr, err := Parse(tt.source)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error %q", tt.source, expr, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error = %q, want %q", tt.source, err.Error(), tt.want)
			}
		})
	}
}

func TestParseLengthLimit(t *testing.T) {
	atLimit := "1" + strings.Repeat(" ", MaxLength-1)
	if _, err := Parse(atLimit); err != nil {
		t.Errorf("Parse(%d bytes) error = %v, want nil", len(atLimit), err)
	}

	overLimit := atLimit + " "
	_, err := Parse(overLimit)
	if err == nil {
		t.Fatalf("Parse(%d bytes) error = nil, want length error", len(overLimit))
	}

	want := "invalid retry delay expression: length is 1001 bytes, which exceeds the maximum of 1000"
	if err.Error() != want {
		t.Errorf("Parse(%d bytes) error = %q, want %q", len(overLimit), err.Error(), want)
	}
}

func TestParseDepthLimit(t *testing.T) {
	tests := []struct {
		name   string
		source func(depth int) string
	}{
		{"parentheses", func(depth int) string {
			return strings.Repeat("(", depth) + "1" + strings.Repeat(")", depth)
		}},
		{"calls", func(depth int) string {
			return strings.Repeat("abs(", depth) + "1" + strings.Repeat(")", depth)
		}},
		{"unary minus", func(depth int) string {
			return strings.Repeat("-", depth) + "1"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			atLimit := tt.source(MaxDepth)
			if _, err := Parse(atLimit); err != nil {
				t.Errorf("Parse(depth %d) error = %v, want nil", MaxDepth, err)
			}

			_, err := Parse(tt.source(MaxDepth + 1))
			if err == nil {
				t.Fatalf("Parse(depth %d) error = nil, want depth error", MaxDepth+1)
			}
			if !strings.Contains(err.Error(), "deeper than the maximum of 64 levels") {
				t.Errorf("Parse(depth %d) error = %q, want it to name the maximum depth", MaxDepth+1, err)
			}
		})
	}
}

func TestParseDepthErrorText(t *testing.T) {
	source := strings.Repeat("(", MaxDepth+1) + "1" + strings.Repeat(")", MaxDepth+1)

	_, err := Parse(source)
	if err == nil {
		t.Fatalf("Parse(%q) error = nil, want depth error", source)
	}

	want := `invalid retry delay expression "` + source + `": nesting at position 65 is deeper than the maximum of 64 levels`
	if err.Error() != want {
		t.Errorf("Parse(%q) error = %q, want %q", source, err.Error(), want)
	}
}

func TestStringReturnsSource(t *testing.T) {
	for _, source := range []string{"1000", "  pow(2, retried) * 1000 ", "max(1000,pow(2,retried)*100)"} {
		expr, err := Parse(source)
		if err != nil {
			t.Fatalf("Parse(%q) error = %v, want nil", source, err)
		}
		if got := expr.String(); got != source {
			t.Errorf("Parse(%q).String() = %q, want %q", source, got, source)
		}
	}
}

func TestDelayClamp(t *testing.T) {
	tests := []struct {
		source  string
		retried int
		want    time.Duration
	}{
		{"1000", 0, time.Second},
		{"1.5", 0, 1500 * time.Microsecond},
		{"pow(2, retried) * 1000", 3, 8 * time.Second},
		{"0", 0, 0},
		{"-1000", 0, 0},
		{"0 / 0", 0, 0},
		{"sqrt(-1)", 0, 0},
		{"-1 / 0", 0, 0},
		{"1 / 0", 0, MaxDelay},
		{"86400000", 0, MaxDelay},
		{"86399999", 0, MaxDelay - time.Millisecond},
		{"86400001", 0, MaxDelay},
		{"pow(2, retried) * 1000", 1000, MaxDelay},
		{"pow(2, retried) * 1000", math.MaxInt, MaxDelay},
		{"1000 * retried", math.MinInt, 0},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			expr, err := Parse(tt.source)
			if err != nil {
				t.Fatalf("Parse(%q) error = %v, want nil", tt.source, err)
			}

			got := expr.Delay(tt.retried)
			if got != tt.want {
				t.Errorf("Parse(%q).Delay(%d) = %v, want %v", tt.source, tt.retried, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	seeds := []struct {
		source  string
		retried int
	}{
		{"1000", 0},
		{"1000 * (1 + retried)", 2},
		{"pow(2, retried) * 1000", 3},
		{"max(1000, pow(2, retried) * 100)", 0},
		{"min(exp(retried), sqrt(abs(-4))) / floor(ceil(round(1.5)))", 7},
		{"1 / 0", 0},
		{"-(0 / 0)", 1},
		{"", 0},
		{"pow(2)", 0},
		{"(1 + 2", 0},
		{"1 + 2)", 0},
		{"foo(1)", 0},
		{"1.2.3", 0},
		{"2 \xff 3", 0},
		{strings.Repeat("(", 70) + "1" + strings.Repeat(")", 70), 0},
	}
	for _, seed := range seeds {
		f.Add(seed.source, seed.retried)
	}

	f.Fuzz(func(t *testing.T, source string, retried int) {
		expr, err := Parse(source)
		if err != nil {
			return
		}

		if got := expr.String(); got != source {
			t.Fatalf("Parse(%q).String() = %q, want the input", source, got)
		}

		for _, r := range []int{0, 1, 10, retried} {
			delay := expr.Delay(r)
			if delay < 0 {
				t.Fatalf("Parse(%q).Delay(%d) = %v, want >= 0", source, r, delay)
			}
			if delay > MaxDelay {
				t.Fatalf("Parse(%q).Delay(%d) = %v, want <= %v", source, r, delay, MaxDelay)
			}
		}
	})
}
