package wire

import (
	"net/http"

	"github.com/ferryhq/ferry"
)

// States of lastScheduleStates.
const (
	ScheduleStateInProgress = "IN_PROGRESS"
	ScheduleStateSuccess    = "SUCCESS"
	ScheduleStateFail       = "FAIL"
)

// ScheduleCreateResponse is the response body of POST
// /v2/schedules/{destination}.
type ScheduleCreateResponse struct {
	ScheduleID string `json:"scheduleId"`
}

// Schedule is a schedule as GET /v2/schedules and GET
// /v2/schedules/{id} return it. Times are Unix milliseconds, and Delay
// and Timeout are whole seconds.
type Schedule struct {
	ScheduleID            string      `json:"scheduleId"`
	Cron                  string      `json:"cron"`
	Destination           string      `json:"destination"`
	CreatedAt             int64       `json:"createdAt"`
	Method                string      `json:"method"`
	Header                http.Header `json:"header,omitempty"`
	Body                  string      `json:"body,omitempty"`
	BodyBase64            string      `json:"bodyBase64,omitempty"`
	Retries               int         `json:"retries"`
	Delay                 int64       `json:"delay,omitempty"`
	Timeout               int64       `json:"timeout,omitempty"`
	Callback              string      `json:"callback,omitempty"`
	FailureCallback       string      `json:"failureCallback,omitempty"`
	CallbackHeader        http.Header `json:"callbackHeader,omitempty"`
	FailureCallbackHeader http.Header `json:"failureCallbackHeader,omitempty"`

	// CallerIP and CallerIp carry the same value: the TypeScript SDK's
	// type declares both spellings.
	CallerIP string `json:"callerIP,omitempty"`
	CallerIp string `json:"callerIp,omitempty"`

	IsPaused             bool     `json:"isPaused"`
	QueueName            string   `json:"queueName,omitempty"`
	RetryDelayExpression string   `json:"retryDelayExpression,omitempty"`
	Label                string   `json:"label,omitempty"`
	Labels               []string `json:"labels,omitempty"`
	LastScheduleTime     int64    `json:"lastScheduleTime,omitempty"`

	// NextScheduleTime is omitted while the schedule is paused or has no
	// tick left.
	NextScheduleTime int64 `json:"nextScheduleTime,omitempty"`

	// LastScheduleStates maps each message of the last trigger to
	// IN_PROGRESS, SUCCESS or FAIL.
	LastScheduleStates map[string]string `json:"lastScheduleStates,omitempty"`

	// Error is the reason the last trigger produced no message.
	Error string `json:"error,omitempty"`
}

// NewSchedule converts a stored schedule to its wire form. states is the
// lastScheduleStates, and nil omits them.
func NewSchedule(s *ferry.Schedule, states map[string]string) Schedule {
	w := Schedule{
		ScheduleID:            s.ID,
		Cron:                  s.Cron,
		Destination:           s.Destination,
		CreatedAt:             s.CreatedAt.UnixMilli(),
		Method:                s.Method,
		Header:                nonEmpty(s.Header),
		Retries:               s.Retries,
		Delay:                 int64(s.Delay.Seconds()),
		Timeout:               int64(s.Timeout.Seconds()),
		Callback:              s.Callback,
		FailureCallback:       s.FailureCallback,
		CallbackHeader:        nonEmpty(s.CallbackHeader),
		FailureCallbackHeader: nonEmpty(s.FailureCallbackHeader),
		CallerIP:              s.CallerIP,
		CallerIp:              s.CallerIP,
		IsPaused:              s.Paused,
		QueueName:             s.QueueName,
		RetryDelayExpression:  s.RetryDelayExpr,
		Labels:                s.Labels,
		Error:                 s.Error,
	}
	w.Body, w.BodyBase64 = SplitBody(s.Body)
	if len(s.Labels) > 0 {
		w.Label = s.Labels[0]
	}
	if !s.LastFireAt.IsZero() {
		w.LastScheduleTime = s.LastFireAt.UnixMilli()
	}
	if !s.Paused && !s.NextFireAt.IsZero() {
		w.NextScheduleTime = s.NextFireAt.UnixMilli()
	}
	if len(states) > 0 {
		w.LastScheduleStates = states
	}
	return w
}

// ScheduleState maps a message state to its lastScheduleStates value. A
// cancelled message counts as FAIL, because the three values have no
// other place for it.
func ScheduleState(state ferry.MessageState) string {
	switch state {
	case ferry.MessageStateDelivered:
		return ScheduleStateSuccess
	case ferry.MessageStateFailed, ferry.MessageStateCanceled:
		return ScheduleStateFail
	}
	return ScheduleStateInProgress
}
