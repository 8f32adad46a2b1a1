package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Cron is a parsed Upstash-Cron value: five fields (minute, hour, day of
// month, month, day of week) or a macro, evaluated in UTC unless a
// CRON_TZ=<IANA zone> prefix names another zone.
type Cron struct {
	spec *cron.SpecSchedule
}

// macros are the accepted shorthands, each equal to a five-field
// expression. robfig/cron's @every is not among them, because it counts
// from the time it was parsed, not from the calendar.
var macros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// fieldNames name the five fields in order, for error messages.
var fieldNames = []string{"minute", "hour", "day of month", "month", "day of week"}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseCron parses expr, which the caller has trimmed. The error describes
// the problem without repeating expr.
func ParseCron(expr string) (*Cron, error) {
	loc := time.UTC
	rest := expr
	if zone, ok := strings.CutPrefix(expr, "CRON_TZ="); ok {
		name, after, found := strings.Cut(zone, " ")
		if !found || strings.TrimSpace(after) == "" {
			return nil, errors.New("CRON_TZ=<zone> must be followed by a space and the cron fields")
		}
		l, err := loadLocation(name)
		if err != nil {
			return nil, err
		}
		loc, rest = l, strings.TrimSpace(after)
	}

	if strings.HasPrefix(rest, "@") {
		fields, ok := macros[strings.ToLower(rest)]
		if !ok {
			return nil, fmt.Errorf("unknown macro %q; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly", rest)
		}
		rest = fields
	}

	fields := strings.Fields(rest)
	if len(fields) != len(fieldNames) {
		return nil, fmt.Errorf("expected 5 fields (minute hour day-of-month month day-of-week), found %d", len(fields))
	}
	for i, f := range fields {
		// Each field is parsed alone first, so the error names the field.
		solo := []string{"*", "*", "*", "*", "*"}
		solo[i] = f
		if _, err := parser.Parse(strings.Join(solo, " ")); err != nil {
			return nil, fmt.Errorf("invalid %s field %q: %v", fieldNames[i], f, err)
		}
	}
	parsed, err := parser.Parse(strings.Join(fields, " "))
	if err != nil {
		return nil, err
	}
	spec, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("unexpected schedule type %T", parsed)
	}
	spec.Location = loc

	c := &Cron{spec: spec}
	if c.Next(time.Now()).IsZero() {
		return nil, errors.New("the expression matches no date within five years, as day 30 of February does")
	}
	return c, nil
}

// loadLocation loads an IANA zone. time.LoadLocation also accepts "" and
// "Local", which depend on the server's settings, so both are rejected.
func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("invalid CRON_TZ zone %q: use an IANA zone such as America/New_York", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("invalid CRON_TZ zone %q: use an IANA zone such as America/New_York", name)
	}
	return loc, nil
}

// Next returns the first tick strictly after after, in UTC, or the zero
// time when no tick falls within five years (robfig/cron's search limit).
//
// Ticks follow robfig/cron v3.0.1 across daylight-saving changes: a wall
// time that a spring-forward skips does not fire that day, and a wall time
// that a fall-back repeats fires twice, once per UTC offset.
func (c *Cron) Next(after time.Time) time.Time {
	next := c.spec.Next(after)
	if next.IsZero() {
		return next
	}
	return next.UTC()
}
