package ferry

import (
	"net/http"
	"time"
)

// MessageState is the lifecycle state of a message. The names and spelling
// are those of the QStash events API.
type MessageState string

const (
	// MessageStateCreated is a message accepted and stored, waiting for its
	// first delivery time. The publish handler moves a message into it.
	MessageStateCreated MessageState = "CREATED"

	// MessageStateActive is a message whose delivery attempt is in
	// progress under a lease. The dispatcher moves a message into it when
	// it claims it. When the lease expires (the node died), the message is
	// due again and another claim moves it back into this state.
	MessageStateActive MessageState = "ACTIVE"

	// MessageStateRetry is a message whose last attempt failed and whose
	// next attempt is scheduled.
	MessageStateRetry MessageState = "RETRY"

	// MessageStateError is recorded as an event only: an attempt failed.
	// A message never rests in it; it moves on to RETRY or FAILED.
	MessageStateError MessageState = "ERROR"

	// MessageStateDelivered is terminal: the destination responded with 2xx.
	MessageStateDelivered MessageState = "DELIVERED"

	// MessageStateFailed is terminal: retries are exhausted or the
	// destination responded with 489 non-retryable, and the message has a
	// DLQ entry.
	MessageStateFailed MessageState = "FAILED"

	// MessageStateCancelRequested is recorded as an event when a cancel
	// arrives for a message in flight.
	MessageStateCancelRequested MessageState = "CANCEL_REQUESTED"

	// MessageStateCanceled is terminal: the message was cancelled before
	// delivery. It is spelled with one L, as the QStash SDKs expect.
	MessageStateCanceled MessageState = "CANCELED"
)

// MessageStates returns every message state.
func MessageStates() []MessageState {
	return []MessageState{
		MessageStateCreated,
		MessageStateActive,
		MessageStateRetry,
		MessageStateError,
		MessageStateDelivered,
		MessageStateFailed,
		MessageStateCancelRequested,
		MessageStateCanceled,
	}
}

// Terminal reports whether no further delivery happens in state s.
func (s MessageState) Terminal() bool {
	switch s {
	case MessageStateDelivered, MessageStateFailed, MessageStateCanceled:
		return true
	}
	return false
}

// Message is a request that Ferry stores durably and delivers to URL.
type Message struct {
	// ID is the message id, "msg_" followed by a ULID.
	ID string

	// State is the current lifecycle state.
	State MessageState

	// URL is the destination, exactly as published, query included.
	URL string

	// Method is the HTTP method of the delivery, POST by default.
	Method string

	// Header holds the headers forwarded to the destination, prefix
	// stripped and names canonical, plus Content-Type when one was given.
	Header http.Header

	// Body is the raw request body, delivered unchanged.
	Body []byte

	// MaxRetries is the number of retries after the first attempt.
	MaxRetries int

	// Retried is the number of failed attempts so far. It is sent to the
	// destination as Upstash-Retried.
	Retried int

	// Attempts counts how often the message was claimed for delivery. State
	// transitions compare it, so a result from an expired lease is dropped.
	Attempts int

	// RetryDelayExpr is the Upstash-Retry-Delay expression, or empty for the
	// default backoff.
	RetryDelayExpr string

	// Timeout is the HTTP deadline of one attempt; zero means the server
	// default.
	Timeout time.Duration

	// NotBefore is the first time the message may be delivered.
	NotBefore time.Time

	// DueAt is when the message is next eligible for a claim: the delivery
	// time while waiting, the lease expiry while active.
	DueAt time.Time

	// LeaseOwner names the node that holds the current lease.
	LeaseOwner string

	// CreatedAt is when the message was accepted.
	CreatedAt time.Time

	// Labels are the values of Upstash-Label.
	Labels []string

	// DeduplicationID is the Upstash-Deduplication-Id, or the content hash
	// when content-based deduplication was requested.
	DeduplicationID string

	// CallerIP is the address the message was published from.
	CallerIP string

	// Callback is the URL called with the outcome after every attempt.
	Callback string

	// FailureCallback is the URL called once after the final failure.
	FailureCallback string

	// CallbackHeader holds the Upstash-Callback-* headers of the publish,
	// which configure each callback message.
	CallbackHeader http.Header

	// FailureCallbackHeader holds the Upstash-Failure-Callback-* headers.
	FailureCallbackHeader http.Header

	// TopicName is the URL group the message was published through.
	TopicName string

	// EndpointName is the name of the URL group endpoint, if it has one.
	EndpointName string

	// QueueName is the queue the message was enqueued to.
	QueueName string

	// ScheduleID is the schedule that created the message.
	ScheduleID string

	// CallbackOf is the id of the message whose outcome this callback
	// message reports; callback messages never get callbacks of their own.
	CallbackOf string

	// JobID and JobRun name the job and the 1-based run that this message
	// delivers; JobID is empty for other messages. The dispatcher records
	// the outcome of job-run attempts through its Jobs hook.
	JobID  string
	JobRun int

	// FlowControlKey is the Upstash-Flow-Control-Key; messages with the
	// same key share the limits of that key. The other FlowControl fields
	// are the limits this message's Upstash-Flow-Control-Value set, zero
	// when unset.
	FlowControlKey         string
	FlowControlParallelism int
	FlowControlRate        int
	FlowControlPeriod      time.Duration
}

// Event records one state transition of a message.
type Event struct {
	// ID orders events; a larger id was recorded later.
	ID int64

	MessageID string
	State     MessageState
	Time      time.Time
	URL       string

	// Retried is the message's retry count when the event was recorded.
	Retried int

	// ResponseStatus is the destination's status code, or zero when the
	// attempt got no HTTP response.
	ResponseStatus int
	ResponseHeader http.Header
	ResponseBody   []byte

	// Error describes a failed attempt.
	Error string

	// Message is the event's message as stored, or nil when only the event
	// remains. Readers fill it in; writers leave it nil.
	Message *Message

	// NextDeliveryTime is set on events followed by a scheduled attempt.
	NextDeliveryTime time.Time
}

// DLQEntry is a message that failed for good, with the last response.
type DLQEntry struct {
	// ID is the dead-letter id.
	ID string

	// Message is the failed message.
	Message *Message

	// CreatedAt is when the message entered the dead-letter queue.
	CreatedAt time.Time

	// ResponseStatus is the last response's status code, zero when the
	// last attempt got no HTTP response (see Error then).
	ResponseStatus int
	ResponseHeader http.Header
	ResponseBody   []byte
	Error          string
}
