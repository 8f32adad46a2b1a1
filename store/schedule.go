package store

import (
	"time"

	"github.com/ferryhq/ferry"
)

// ScheduleSetPausedParams pauses or resumes a schedule.
type ScheduleSetPausedParams struct {
	ID     string
	Paused bool

	// Next returns the next fire time of a resumed schedule, which ticks
	// missed while it was paused do not fire. It runs inside the
	// transaction, only when a paused schedule is resumed.
	Next func(s *ferry.Schedule) time.Time
}

// ScheduleFireParams fires due schedules.
//
// Each due schedule fires in the transaction that reads it: Trigger
// returns the message and the following tick, the schedule's next fire
// time moves from the value read to that tick (a compare-and-set), and the
// message is stored. A schedule that another store handle fired after the
// read fails the compare-and-set and is skipped, so every tick fires at
// most once however many schedulers share the database.
type ScheduleFireParams struct {
	Now   time.Time
	Limit int

	// Trigger returns what firing s at Now does. It runs inside the
	// transaction, and on PostgreSQL it may run again when the transaction
	// is retried, so it must not have side effects.
	Trigger func(s *ferry.Schedule) ScheduleTrigger
}

// ScheduleTrigger is the outcome of one tick of a schedule.
type ScheduleTrigger struct {
	// Message is stored in state CREATED, or nil when the tick produces
	// none.
	Message *ferry.Message

	// Next is the schedule's next fire time; the zero time means no tick
	// is left and the schedule never fires again.
	Next time.Time

	// Error is stored as the schedule's Error; empty clears it.
	Error string
}
