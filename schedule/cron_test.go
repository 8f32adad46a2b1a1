package schedule

import (
	"testing"
	"time"
)

func mustParse(t *testing.T, expr string) *Cron {
	t.Helper()
	c, err := ParseCron(expr)
	if err != nil {
		t.Fatalf("ParseCron(%q): %v", expr, err)
	}
	return c
}

// ticks returns the first n ticks of c after start.
func ticks(c *Cron, start time.Time, n int) []time.Time {
	var out []time.Time
	at := start
	for range n {
		at = c.Next(at)
		out = append(out, at)
	}
	return out
}

func checkTicks(t *testing.T, expr string, got []time.Time, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d ticks, want %d", expr, len(got), len(want))
	}
	for i, w := range want {
		wantTime, err := time.Parse(time.RFC3339, w)
		if err != nil {
			t.Fatal(err)
		}
		if !got[i].Equal(wantTime) {
			t.Errorf("%s: tick %d = %s, want %s", expr, i, got[i].Format(time.RFC3339), w)
		}
		if got[i].Location() != time.UTC {
			t.Errorf("%s: tick %d is in %s, want UTC", expr, i, got[i].Location())
		}
	}
}

func TestParseCronErrors(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 6"},
		{"* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 4"},
		{"61 * * * *", `invalid minute field "61": end of range (61) above maximum (59): 61`},
		{"* 24 * * *", `invalid hour field "24": end of range (24) above maximum (23): 24`},
		{"* * 0 * *", `invalid day of month field "0": beginning of range (0) below minimum (1): 0`},
		{"* * * 13 *", `invalid month field "13": end of range (13) above maximum (12): 13`},
		{"* * * * 8", `invalid day of week field "8": end of range (8) above maximum (6): 8`},
		{"0 0 30 2 *", "the expression matches no date within five years, as day 30 of February does"},
		{"@every 1m", `unknown macro "@every 1m"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly`},
		{"@fortnightly", `unknown macro "@fortnightly"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly`},
		{"CRON_TZ=Mars/Olympus_Mons * * * * *", `invalid CRON_TZ zone "Mars/Olympus_Mons": use an IANA zone such as America/New_York`},
		{"CRON_TZ=Local * * * * *", `invalid CRON_TZ zone "Local": use an IANA zone such as America/New_York`},
		{"CRON_TZ= * * * * *", `invalid CRON_TZ zone "": use an IANA zone such as America/New_York`},
		{"CRON_TZ=UTC", "CRON_TZ=<zone> must be followed by a space and the cron fields"},
	}
	for _, tc := range tests {
		_, err := ParseCron(tc.expr)
		if err == nil {
			t.Errorf("ParseCron(%q) succeeded, want error %q", tc.expr, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("ParseCron(%q) error = %q, want %q", tc.expr, err, tc.want)
		}
	}
}

func TestCronNextUTC(t *testing.T) {
	start := time.Date(2026, 5, 17, 23, 55, 30, 0, time.UTC)

	checkTicks(t, "*/10", ticks(mustParse(t, "*/10 * * * *"), start, 3),
		"2026-05-18T00:00:00Z", "2026-05-18T00:10:00Z", "2026-05-18T00:20:00Z")

	// A time exactly on a tick yields the following tick.
	checkTicks(t, "on a tick", ticks(mustParse(t, "* * * * *"), time.Date(2026, 5, 17, 12, 0, 0, 0, time.UTC), 2),
		"2026-05-17T12:01:00Z", "2026-05-17T12:02:00Z")

	// A time zone other than UTC on the input does not change the result.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	checkTicks(t, "hourly from Berlin time", ticks(mustParse(t, "0 * * * *"), start.In(berlin), 1), "2026-05-18T00:00:00Z")
}

func TestCronMacros(t *testing.T) {
	start := time.Date(2026, 5, 17, 23, 55, 30, 0, time.UTC)
	for macro, fields := range macros {
		got := ticks(mustParse(t, macro), start, 3)
		want := ticks(mustParse(t, fields), start, 3)
		for i := range want {
			if !got[i].Equal(want[i]) {
				t.Errorf("%s tick %d = %s, want %s as for %q", macro, i, got[i], want[i], fields)
			}
		}
	}

	checkTicks(t, "@daily", ticks(mustParse(t, "@daily"), start, 2), "2026-05-18T00:00:00Z", "2026-05-19T00:00:00Z")
	checkTicks(t, "@hourly", ticks(mustParse(t, "@HOURLY"), start, 2), "2026-05-18T00:00:00Z", "2026-05-18T01:00:00Z")
	checkTicks(t, "CRON_TZ=Asia/Tokyo @daily", ticks(mustParse(t, "CRON_TZ=Asia/Tokyo @daily"), start, 1),
		"2026-05-18T15:00:00Z")
}

// TestCronDaylightSaving pins the behaviour of robfig/cron v3.0.1, which
// its documentation states: a job at a wall time that a spring-forward
// skips does not run that day. Its tests add that a wall time repeated by
// a fall-back runs twice.
func TestCronDaylightSaving(t *testing.T) {
	// New York moves from 02:00 EST to 03:00 EDT on 8 March 2026, so
	// 02:30 does not exist that day.
	spring := time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)
	checkTicks(t, "02:30 spring", ticks(mustParse(t, "CRON_TZ=America/New_York 30 2 * * *"), spring, 3),
		"2026-03-07T07:30:00Z", // 02:30 EST
		"2026-03-09T06:30:00Z", // 02:30 EDT; 8 March has no 02:30
		"2026-03-10T06:30:00Z")
	checkTicks(t, "01:30 spring", ticks(mustParse(t, "CRON_TZ=America/New_York 30 1 * * *"), spring, 3),
		"2026-03-07T06:30:00Z", // 01:30 EST
		"2026-03-08T06:30:00Z", // 01:30 EST, before the change at 02:00
		"2026-03-09T05:30:00Z") // 01:30 EDT

	// New York moves from 02:00 EDT back to 01:00 EST on 1 November 2026,
	// so 01:30 happens twice and 02:30 once.
	fall := time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC)
	checkTicks(t, "02:30 fall", ticks(mustParse(t, "CRON_TZ=America/New_York 30 2 * * *"), fall, 2),
		"2026-11-01T07:30:00Z", // 02:30 EST
		"2026-11-02T07:30:00Z")
	checkTicks(t, "01:30 fall", ticks(mustParse(t, "CRON_TZ=America/New_York 30 1 * * *"), fall, 3),
		"2026-11-01T05:30:00Z", // 01:30 EDT
		"2026-11-01T06:30:00Z", // 01:30 EST, the repeated hour
		"2026-11-02T06:30:00Z")

	// Without CRON_TZ the same expression runs in UTC, unaffected.
	checkTicks(t, "02:30 UTC", ticks(mustParse(t, "30 2 * * *"), spring, 3),
		"2026-03-07T02:30:00Z", "2026-03-08T02:30:00Z", "2026-03-09T02:30:00Z")
}

func TestTimescaleNext(t *testing.T) {
	origin := time.Date(2026, 5, 17, 12, 0, 0, 0, time.UTC)
	ts := Timescale{Origin: origin, MinuteLength: time.Second}
	if err := ts.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	// Every cron minute lasts one second, so "* * * * *" ticks every
	// second and "*/5 * * * *" every five.
	every := mustParse(t, "* * * * *")
	at := origin.Add(300 * time.Millisecond)
	for i := 1; i <= 3; i++ {
		at = ts.Next(every, at)
		if want := origin.Add(time.Duration(i) * time.Second); !at.Equal(want) {
			t.Errorf("tick %d = %s, want %s", i, at, want)
		}
	}
	if got, want := ts.Next(mustParse(t, "*/5 * * * *"), origin.Add(time.Second)), origin.Add(5*time.Second); !got.Equal(want) {
		t.Errorf("*/5 tick = %s, want %s", got, want)
	}

	// The zero value is real time.
	if got, want := (Timescale{}).Next(every, origin), origin.Add(time.Minute); !got.Equal(want) {
		t.Errorf("zero Timescale tick = %s, want %s", got, want)
	}

	for _, bad := range []time.Duration{-time.Second, 7 * time.Second, 2 * time.Minute} {
		if err := (Timescale{MinuteLength: bad}).Validate(); err == nil {
			t.Errorf("Validate accepted MinuteLength %s", bad)
		}
	}
}
