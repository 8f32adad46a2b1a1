package store

import (
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
)

// MessageFilter selects messages, events or dead-letter entries by the
// fields of their message. Within one field the values are alternatives
// (OR); across fields all must match (AND). Empty fields do not filter.
type MessageFilter struct {
	MessageIDs      []string
	URLs            []string
	Hosts           []string
	Paths           []string
	TopicNames      []string
	QueueNames      []string
	ScheduleIDs     []string
	Labels          []string
	CallerIPs       []string
	FlowControlKeys []string

	// States matches event states (events) or message states (messages).
	States []ferry.MessageState

	// ResponseStatuses matches the last response of dead-letter entries.
	ResponseStatuses []int

	// From and To bound the time of the row (creation for messages and
	// dead-letter entries, the event time for events), both inclusive.
	From, To time.Time
}

// Empty reports whether f selects everything.
func (f *MessageFilter) Empty() bool {
	return f == nil || (len(f.MessageIDs) == 0 && len(f.URLs) == 0 && len(f.Hosts) == 0 && len(f.Paths) == 0 &&
		len(f.TopicNames) == 0 && len(f.QueueNames) == 0 && len(f.ScheduleIDs) == 0 && len(f.Labels) == 0 &&
		len(f.CallerIPs) == 0 && len(f.FlowControlKeys) == 0 && len(f.States) == 0 &&
		len(f.ResponseStatuses) == 0 && f.From.IsZero() && f.To.IsZero())
}

// Where is a builder of SQL conditions. Backends give it their placeholder
// syntax and the SQL that tests a JSON array column for any of some labels.
type Where struct {
	// Placeholder returns the n-th (1-based) parameter marker.
	Placeholder func(n int) string

	// LabelsMatch returns a condition that is true when the JSON array in
	// column contains any of the labels bound at the given markers.
	LabelsMatch func(column string, markers []string) string

	conds []string
	Args  []any
}

// Add appends a condition with args; each "?" in cond becomes a marker.
func (w *Where) Add(cond string, args ...any) {
	var b strings.Builder
	for _, r := range cond {
		if r == '?' {
			w.Args = append(w.Args, nil)
			b.WriteString(w.Placeholder(len(w.Args)))
			continue
		}
		b.WriteRune(r)
	}
	// Bind after counting, so args line up with the markers just written.
	copy(w.Args[len(w.Args)-len(args):], args)
	w.conds = append(w.conds, b.String())
}

// In appends "column IN (...)" for the values, when there are any.
func (w *Where) In(column string, values []string) {
	if len(values) == 0 {
		return
	}
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	w.Add(column+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", ")+")", args...)
}

// SQL returns the conditions joined by AND, or "TRUE" when there are none.
func (w *Where) SQL() string {
	if len(w.conds) == 0 {
		return "1 = 1"
	}
	return strings.Join(w.conds, " AND ")
}

// AddMessageFilter appends the conditions of f. prefix qualifies message
// columns (such as "m."), and timeColumn is the column that From and To
// bound.
func (w *Where) AddMessageFilter(f *MessageFilter, prefix, timeColumn string) {
	if f == nil {
		return
	}
	w.In(prefix+"id", f.MessageIDs)
	w.In(prefix+"url", f.URLs)
	w.In(prefix+"url_host", f.Hosts)
	w.In(prefix+"url_path", f.Paths)
	w.In(prefix+"topic_name", f.TopicNames)
	w.In(prefix+"queue_name", f.QueueNames)
	w.In(prefix+"schedule_id", f.ScheduleIDs)
	w.In(prefix+"caller_ip", f.CallerIPs)
	w.In(prefix+"flow_control_key", f.FlowControlKeys)
	if len(f.Labels) > 0 {
		start := len(w.Args)
		markers := make([]string, len(f.Labels))
		for i, l := range f.Labels {
			w.Args = append(w.Args, l)
			markers[i] = w.Placeholder(start + i + 1)
		}
		w.conds = append(w.conds, w.LabelsMatch(prefix+"labels", markers))
	}
	if !f.From.IsZero() {
		w.Add(timeColumn+" >= ?", Millis(f.From))
	}
	if !f.To.IsZero() {
		w.Add(timeColumn+" <= ?", Millis(f.To))
	}
}

// QuestionMark is the placeholder syntax of SQLite.
func QuestionMark(int) string { return "?" }

// DollarN is the placeholder syntax of PostgreSQL.
func DollarN(n int) string { return "$" + strconv.Itoa(n) }
