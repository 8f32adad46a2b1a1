package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		input string
		want  time.Duration
	}{
		{"10s", 10 * time.Second},
		{"2m", 2 * time.Minute},
		{"3h", 3 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"0s", 0},
		{"0d0h0m0s", 0},
		{"1h30m3s", time.Hour + 30*time.Minute + 3*time.Second},
		{"1d10h30m", 34*time.Hour + 30*time.Minute},
		{"30m1d", 24*time.Hour + 30*time.Minute},
		{"30m30m", time.Hour},
		{"90s", 90 * time.Second},
		{"007s", 7 * time.Second},
		{"  45s\t", 45 * time.Second},
		{"36500d", Max},
		{"36499d24h", Max},
		{"3153600000s", Max},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			got, err := Parse(tt.input)
			if err != nil {
				t.Fatalf("Parse(%q) error = %v, want nil", tt.input, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %v, want %v", tt.input, got, tt.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		input string
		want  string
	}{
		{"", `invalid duration "": value is empty; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"   ", `invalid duration "": value is empty; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"10x", `invalid duration "10x": unknown unit "x"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"10ms", `invalid duration "10ms": unknown unit "ms"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"10S", `invalid duration "10S": unknown unit "S"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"10", `invalid duration "10": missing unit after "10"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"1h30", `invalid duration "1h30": missing unit after "30"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"-5s", `invalid duration "-5s": sign "-" is not allowed; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"+5s", `invalid duration "+5s": sign "+" is not allowed; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"1h-5m", `invalid duration "1h-5m": sign "-" is not allowed; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"1.5h", `invalid duration "1.5h": decimal number "1.5" is not allowed; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{".5h", `invalid duration ".5h": decimal number ".5" is not allowed; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"m", `invalid duration "m": missing number before unit "m"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"1hm", `invalid duration "1hm": unknown unit "hm"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"1h 30m", `invalid duration "1h 30m": unexpected character " "; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"10 s", `invalid duration "10 s": unexpected character " "; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"10\xffs", `invalid duration "10\xffs": invalid UTF-8 encoding; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`},
		{"36500d1s", `invalid duration "36500d1s": exceeds the maximum of 36500d (about 100 years)`},
		{"36501d", `invalid duration "36501d": exceeds the maximum of 36500d (about 100 years)`},
		{"99999999999999999999999s", `invalid duration "99999999999999999999999s": exceeds the maximum of 36500d (about 100 years)`},
		{"106751d", `invalid duration "106751d": exceeds the maximum of 36500d (about 100 years)`},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			got, err := Parse(tt.input)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %q", tt.input, got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error = %q, want %q", tt.input, err.Error(), tt.want)
			}
		})
	}
}

func TestParseSumOverflow(t *testing.T) {
	input := strings.Repeat("36500d", 1000)

	_, err := Parse(input)
	if err == nil {
		t.Fatalf("Parse(36500d repeated 1000 times) error = nil, want overflow error")
	}
	if !strings.Contains(err.Error(), "exceeds the maximum") {
		t.Errorf("Parse(36500d repeated 1000 times) error = %q, want it to mention the maximum", err)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		input time.Duration
		want  string
	}{
		{0, "0s"},
		{500 * time.Millisecond, "0s"},
		{-time.Hour, "0s"},
		{time.Second, "1s"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{time.Hour + 1500*time.Millisecond, "1h1s"},
		{34*time.Hour + 30*time.Minute, "1d10h30m"},
		{24*time.Hour + 3*time.Second, "1d3s"},
		{Max, "36500d"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := Format(tt.input)
			if got != tt.want {
				t.Errorf("Format(%v) = %q, want %q", tt.input, got, tt.want)
			}
		})
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	for _, seconds := range []int64{0, 1, 59, 60, 61, 3599, 3600, 86399, 86400, 90061, 3153600000} {
		d := time.Duration(seconds) * time.Second

		got, err := Parse(Format(d))
		if err != nil {
			t.Fatalf("Parse(Format(%v)) error = %v, want nil", d, err)
		}
		if got != d {
			t.Errorf("Parse(Format(%v)) = %v, want %v", d, got, d)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"10s", "1d10h30m", "1h30m3s", "30m30m", " 2m ", "36500d",
		"", "10", "10x", "-5s", "1.5h", "m", "1h 30m", "99999999999999999999s", "10\xffs",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, input string) {
		d, err := Parse(input)
		if err != nil {
			return
		}

		if d < 0 {
			t.Fatalf("Parse(%q) = %v, want >= 0", input, d)
		}
		if d > Max {
			t.Fatalf("Parse(%q) = %v, want <= %v", input, d, Max)
		}
		if d%time.Second != 0 {
			t.Fatalf("Parse(%q) = %v, want whole seconds", input, d)
		}

		formatted := Format(d)
		again, err := Parse(formatted)
		if err != nil {
			t.Fatalf("Parse(Format(%v)) = Parse(%q) error = %v, want nil", d, formatted, err)
		}
		if again != d {
			t.Fatalf("Parse(Format(%v)) = Parse(%q) = %v, want %v", d, formatted, again, d)
		}
	})
}
