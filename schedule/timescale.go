package schedule

import (
	"fmt"
	"time"
)

// Timescale maps real time to the time in which cron expressions are
// evaluated. The zero value is real time. Tests set MinuteLength to make
// every cron minute last, for example, one second, so "* * * * *" fires
// every second: the cron clock runs time.Minute/MinuteLength times faster
// than the real one, counted from Origin.
type Timescale struct {
	// Origin is the real time at which both clocks agree.
	Origin time.Time

	// MinuteLength is the real duration of one cron minute. Zero means one
	// minute. It must divide one minute evenly.
	MinuteLength time.Duration
}

// Validate reports a MinuteLength that does not divide one minute.
func (ts Timescale) Validate() error {
	if ts.MinuteLength < 0 || (ts.MinuteLength > 0 && time.Minute%ts.MinuteLength != 0) {
		return fmt.Errorf("invalid cron minute length %s: use a positive duration that divides 1m, such as 1s or 500ms", ts.MinuteLength)
	}
	return nil
}

// factor returns how many times faster the cron clock runs.
func (ts Timescale) factor() time.Duration {
	if ts.MinuteLength <= 0 || ts.MinuteLength >= time.Minute {
		return 1
	}
	return time.Minute / ts.MinuteLength
}

// Next returns the first tick of c after the real time after, in real
// time (UTC), or the zero time when c has no tick left.
func (ts Timescale) Next(c *Cron, after time.Time) time.Time {
	k := ts.factor()
	if k == 1 {
		return c.Next(after)
	}

	// The cron tick is at least one cron second after the scaled time, so
	// the division rounding down still yields a real time after after.
	scaled := ts.Origin.Add(after.Sub(ts.Origin) * k)
	next := c.Next(scaled)
	if next.IsZero() {
		return next
	}
	return ts.Origin.Add(next.Sub(ts.Origin) / k).UTC()
}
