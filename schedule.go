package ferry

import (
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"
)

// Schedule publishes a message to Destination at every tick of a cron
// expression. The message settings are those of a publish and are copied
// into each triggered message.
type Schedule struct {
	// ID is the schedule id: the Upstash-Schedule-Id of the request, or
	// "scd_" followed by a ULID.
	ID string

	// Cron is the Upstash-Cron expression, trimmed, with an optional
	// CRON_TZ=<zone> prefix.
	Cron string

	// Destination is the URL of each triggered message, query included.
	Destination string

	// Method is the HTTP method of each delivery.
	Method string

	// Header holds the headers forwarded to the destination, plus
	// Content-Type when one was given.
	Header http.Header

	// Body is the body of each triggered message.
	Body []byte

	// Retries is the MaxRetries of each triggered message.
	Retries int

	// Delay is added to the trigger time to get a message's NotBefore.
	Delay time.Duration

	// Timeout is the HTTP deadline of one attempt; zero means the server
	// default.
	Timeout time.Duration

	// RetryDelayExpr is the Upstash-Retry-Delay expression, or empty.
	RetryDelayExpr string

	Callback              string
	FailureCallback       string
	CallbackHeader        http.Header
	FailureCallbackHeader http.Header

	// Labels are the values of Upstash-Label.
	Labels []string

	// QueueName is the Upstash-Queue-Name, stored on triggered messages.
	QueueName string

	// CallerIP is the address the schedule was created from.
	CallerIP string

	// Paused stops the schedule from firing until it is resumed.
	Paused bool

	// CreatedAt is when the schedule was created or last replaced.
	CreatedAt time.Time

	// NextFireAt is the next tick, or the zero time when the cron
	// expression has no tick left. While Paused it is not updated.
	NextFireAt time.Time

	// LastFireAt is when the schedule last fired, or the zero time.
	LastFireAt time.Time

	// LastMessageIDs are the messages of the last trigger.
	LastMessageIDs []string

	// Error describes why the last trigger produced no message, or is
	// empty.
	Error string
}

// NewScheduleID returns a new schedule id: "scd_" and a ULID.
func NewScheduleID() string {
	return "scd_" + ulid.Make().String()
}
