package publish

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/duration"
)

// Limits of flow-control settings.
const (
	// MaxFlowControlKey is the longest Upstash-Flow-Control-Key accepted.
	MaxFlowControlKey = 256

	// MaxFlowControlParallelism and MaxFlowControlRate bound the values of
	// Upstash-Flow-Control-Value.
	MaxFlowControlParallelism = 100_000
	MaxFlowControlRate        = 1_000_000

	// MaxFlowControlPeriod is the longest period, one week.
	MaxFlowControlPeriod = 7 * 24 * time.Hour
)

// flowControlValueForm is the accepted form, named in errors.
const flowControlValueForm = `comma-separated settings such as "parallelism=2, rate=10, period=1m"`

// HasFlowControl reports whether src sets Upstash-Flow-Control-Key or
// Upstash-Flow-Control-Value.
func HasFlowControl(src Source) bool {
	_, key := src.Get("Upstash-Flow-Control-Key")
	_, value := src.Get("Upstash-Flow-Control-Value")
	return key || value
}

// ApplyFlowControl sets m's flow-control key and limits from
// Upstash-Flow-Control-Key and Upstash-Flow-Control-Value. The value
// contains parallelism, rate and period settings, at least one of
// parallelism and rate. The period is a duration such as 1m or 1h30m, or a
// number of seconds, and defaults to one second.
func ApplyFlowControl(m *ferry.Message, src Source) error {
	key, hasKey := src.Get("Upstash-Flow-Control-Key")
	value, hasValue := src.Get("Upstash-Flow-Control-Value")
	switch {
	case !hasKey && !hasValue:
		return nil
	case !hasKey:
		return ferry.Errorf(ferry.EINVALID, "missing Upstash-Flow-Control-Key header: Upstash-Flow-Control-Value needs a key")
	case !hasValue:
		return ferry.Errorf(ferry.EINVALID, "missing Upstash-Flow-Control-Value header: set %s for key %q",
			flowControlValueForm, Truncate(key))
	}
	if err := ValidateFlowControlKey(key); err != nil {
		return err
	}

	parallelism, rate, period, err := ParseFlowControlValue(value)
	if err != nil {
		return err
	}
	m.FlowControlKey = key
	m.FlowControlParallelism, m.FlowControlRate, m.FlowControlPeriod = parallelism, rate, period
	return nil
}

// ValidateFlowControlKey checks a key: 1 to MaxFlowControlKey bytes of
// UTF-8 without control characters.
func ValidateFlowControlKey(key string) error {
	if key == "" || len(key) > MaxFlowControlKey || !utf8.ValidString(key) ||
		strings.IndexFunc(key, unicode.IsControl) >= 0 {
		return InvalidHeader("Upstash-Flow-Control-Key", key,
			"1 to "+strconv.Itoa(MaxFlowControlKey)+" bytes of text without control characters")
	}
	return nil
}

// ParseFlowControlValue parses an Upstash-Flow-Control-Value. A period
// given without a rate is kept, and a rate without a period gets none
// (zero), which the store reads as one second.
func ParseFlowControlValue(value string) (parallelism, rate int, period time.Duration, err error) {
	invalid := func(reason string) error {
		return ferry.Errorf(ferry.EINVALID, "invalid Upstash-Flow-Control-Value header %q: %s; expected %s",
			Truncate(value), reason, flowControlValueForm)
	}

	seen := map[string]bool{}
	for _, part := range strings.Split(value, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		name, v = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(v)
		if !ok || v == "" {
			return 0, 0, 0, invalid("setting " + strconv.Quote(Truncate(part)) + " has no value")
		}
		if seen[name] {
			return 0, 0, 0, invalid(name + " is set twice")
		}
		seen[name] = true

		switch name {
		case "parallelism":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxFlowControlParallelism {
				return 0, 0, 0, invalid("parallelism must be an integer from 1 to " + strconv.Itoa(MaxFlowControlParallelism))
			}
			parallelism = n
		case "rate", "ratepersecond":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxFlowControlRate {
				return 0, 0, 0, invalid("rate must be an integer from 1 to " + strconv.Itoa(MaxFlowControlRate))
			}
			rate = n
		case "period":
			d, err := parsePeriod(v)
			if err != nil {
				return 0, 0, 0, invalid(err.Error())
			}
			period = d
		default:
			return 0, 0, 0, invalid("unknown setting " + strconv.Quote(Truncate(name)))
		}
	}
	if seen["rate"] && seen["ratepersecond"] {
		return 0, 0, 0, invalid("rate is set twice")
	}
	if parallelism == 0 && rate == 0 {
		return 0, 0, 0, invalid("set parallelism, rate or both")
	}
	return parallelism, rate, period, nil
}

// parsePeriod parses a period: a duration such as 10s or 1h30m, or a whole
// number of seconds.
func parsePeriod(v string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 1 || n > int64(MaxFlowControlPeriod/time.Second) {
			return 0, errPeriodRange
		}
		d = time.Duration(n) * time.Second
	} else {
		d, err = duration.Parse(v)
		if err != nil {
			return 0, errPeriodSyntax
		}
	}
	if d < time.Second || d > MaxFlowControlPeriod {
		return 0, errPeriodRange
	}
	return d, nil
}

var (
	errPeriodRange  = periodError("period must be from 1s to " + duration.Format(MaxFlowControlPeriod))
	errPeriodSyntax = periodError("period must be a duration such as 30s or 1h30m, or a number of seconds")
)

type periodError string

func (e periodError) Error() string { return string(e) }
