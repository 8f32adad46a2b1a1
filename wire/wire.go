// Package wire defines the JSON shapes of the QStash v2 API as Ferry
// serves them, shared by the HTTP API and the Go client. Field names and
// types follow what the official QStash SDKs parse: header values are
// arrays, times are Unix milliseconds, cursors are strings omitted on the
// last page, and a few fields appear under two spellings because the SDKs
// disagree.
package wire

import (
	"encoding/base64"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
)

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// PublishResponse answers a publish to a URL, and is one element of a
// bulk DLQ retry.
type PublishResponse struct {
	MessageID    string `json:"messageId"`
	URL          string `json:"url,omitempty"`
	Deduplicated bool   `json:"deduplicated,omitempty"`
}

// Message is a message as GET /v2/messages/{id} returns it.
type Message struct {
	MessageID             string      `json:"messageId"`
	URL                   string      `json:"url"`
	TopicName             string      `json:"topicName,omitempty"`
	URLGroup              string      `json:"urlGroup,omitempty"`
	EndpointName          string      `json:"endpointName,omitempty"`
	Method                string      `json:"method"`
	Header                http.Header `json:"header,omitempty"`
	Body                  string      `json:"body,omitempty"`
	BodyBase64            string      `json:"bodyBase64,omitempty"`
	MaxRetries            int         `json:"maxRetries"`
	RetryDelayExpression  string      `json:"retryDelayExpression,omitempty"`
	NotBefore             int64       `json:"notBefore"`
	CreatedAt             int64       `json:"createdAt"`
	Callback              string      `json:"callback,omitempty"`
	FailureCallback       string      `json:"failureCallback,omitempty"`
	CallbackHeader        http.Header `json:"callbackHeader,omitempty"`
	FailureCallbackHeader http.Header `json:"failureCallbackHeader,omitempty"`
	QueueName             string      `json:"queueName,omitempty"`
	ScheduleID            string      `json:"scheduleId,omitempty"`
	CallerIP              string      `json:"callerIP,omitempty"`
	Label                 string      `json:"label,omitempty"`
	Labels                []string    `json:"labels,omitempty"`

	// FlowControlKey is the message's Upstash-Flow-Control-Key, with the
	// limits its Upstash-Flow-Control-Value set; Period is in seconds.
	FlowControlKey string `json:"flowControlKey,omitempty"`
	Parallelism    int    `json:"parallelism,omitempty"`
	Rate           int    `json:"rate,omitempty"`
	Period         int64  `json:"period,omitempty"`
}

// DLQMessage is a dead-letter entry: the message plus its last response.
type DLQMessage struct {
	Message
	DLQID              string      `json:"dlqId"`
	ResponseStatus     int         `json:"responseStatus"`
	ResponseHeader     http.Header `json:"responseHeader,omitempty"`
	ResponseBody       string      `json:"responseBody,omitempty"`
	ResponseBodyBase64 string      `json:"responseBodyBase64,omitempty"`

	// Error is a Ferry extension: why the last attempt failed, also when
	// it got no HTTP response (ResponseStatus is 0 then).
	Error string `json:"error,omitempty"`
}

// DLQListResponse answers GET /v2/dlq.
type DLQListResponse struct {
	Messages []DLQMessage `json:"messages"`
	Cursor   string       `json:"cursor,omitempty"`
}

// DLQDeleteResponse answers DELETE /v2/dlq.
type DLQDeleteResponse struct {
	Deleted int    `json:"deleted"`
	Cursor  string `json:"cursor,omitempty"`
}

// DLQRetryResponse answers POST /v2/dlq/retry.
type DLQRetryResponse struct {
	Cursor    string            `json:"cursor,omitempty"`
	Responses []PublishResponse `json:"responses"`
}

// CancelResponse answers DELETE /v2/messages and DELETE
// /v2/messages/{id}.
type CancelResponse struct {
	Cancelled int `json:"cancelled"`
}

// Event is one state transition as GET /v2/events and GET /v2/logs return
// it. Bodies are base64 here, unlike on messages.
type Event struct {
	Time                   int64       `json:"time"`
	MessageID              string      `json:"messageId"`
	State                  string      `json:"state"`
	URL                    string      `json:"url"`
	Error                  string      `json:"error,omitempty"`
	NextDeliveryTime       int64       `json:"nextDeliveryTime,omitempty"`
	TopicName              string      `json:"topicName,omitempty"`
	EndpointName           string      `json:"endpointName,omitempty"`
	QueueName              string      `json:"queueName,omitempty"`
	ScheduleID             string      `json:"scheduleId,omitempty"`
	Header                 http.Header `json:"header,omitempty"`
	Body                   string      `json:"body,omitempty"`
	ResponseStatus         int         `json:"responseStatus,omitempty"`
	ResponseBody           string      `json:"responseBody,omitempty"`
	ResponseHeaders        http.Header `json:"responseHeaders,omitempty"`
	ResponseHeader         http.Header `json:"responseHeader,omitempty"`
	Timeout                int64       `json:"timeout,omitempty"`
	Method                 string      `json:"method,omitempty"`
	Callback               string      `json:"callback,omitempty"`
	FailureCallback        string      `json:"failureCallback,omitempty"`
	CallbackHeaders        http.Header `json:"callbackHeaders,omitempty"`
	FailureCallbackHeaders http.Header `json:"failureCallbackHeaders,omitempty"`
	MaxRetries             int         `json:"maxRetries,omitempty"`
	RetryDelayExpression   string      `json:"retryDelayExpression,omitempty"`
	RetryDelayExpr         string      `json:"retryDelayExpr,omitempty"`
	CallerIP               string      `json:"callerIP,omitempty"`
	Label                  string      `json:"label,omitempty"`
	Labels                 []string    `json:"labels,omitempty"`
	FlowControlKey         string      `json:"flowControlKey,omitempty"`
	Parallelism            int         `json:"parallelism,omitempty"`
	Rate                   int         `json:"rate,omitempty"`
	Period                 int64       `json:"period,omitempty"`

	// Retried is a Ferry extension: the message's retry count at the event.
	Retried int `json:"retried"`
}

// EventsResponse answers GET /v2/events. GET /v2/logs uses the key "logs"
// for the same list.
type EventsResponse struct {
	Cursor string  `json:"cursor,omitempty"`
	Events []Event `json:"events"`
}

// LogsResponse answers GET /v2/logs.
type LogsResponse struct {
	Cursor string  `json:"cursor,omitempty"`
	Logs   []Event `json:"logs"`
}

// Keys is the signing key pair.
type Keys struct {
	Current string `json:"current"`
	Next    string `json:"next"`
}

// CallbackBody is the JSON body of a callback or failure-callback
// delivery. When an attempt got no HTTP response, Status is 0, Body is
// empty and Error says what happened (a Ferry extension).
type CallbackBody struct {
	Status          int         `json:"status"`
	Header          http.Header `json:"header"`
	Body            string      `json:"body"`
	Error           string      `json:"error,omitempty"`
	Retried         int         `json:"retried"`
	MaxRetries      int         `json:"maxRetries"`
	SourceMessageID string      `json:"sourceMessageId"`
	TopicName       string      `json:"topicName,omitempty"`
	EndpointName    string      `json:"endpointName,omitempty"`
	URL             string      `json:"url"`
	Method          string      `json:"method"`
	SourceHeader    http.Header `json:"sourceHeader"`
	SourceBody      string      `json:"sourceBody"`
	NotBefore       string      `json:"notBefore"`
	CreatedAt       string      `json:"createdAt"`
	ScheduleID      string      `json:"scheduleId,omitempty"`
	CallerIP        string      `json:"callerIP,omitempty"`
	DLQID           string      `json:"dlqId,omitempty"`
}

// NewMessage converts a stored message to its wire form.
func NewMessage(m *ferry.Message) Message {
	w := Message{
		MessageID:             m.ID,
		URL:                   m.URL,
		TopicName:             m.TopicName,
		URLGroup:              m.TopicName,
		EndpointName:          m.EndpointName,
		Method:                m.Method,
		Header:                nonEmpty(m.Header),
		MaxRetries:            m.MaxRetries,
		RetryDelayExpression:  m.RetryDelayExpr,
		NotBefore:             m.NotBefore.UnixMilli(),
		CreatedAt:             m.CreatedAt.UnixMilli(),
		Callback:              m.Callback,
		FailureCallback:       m.FailureCallback,
		CallbackHeader:        nonEmpty(m.CallbackHeader),
		FailureCallbackHeader: nonEmpty(m.FailureCallbackHeader),
		QueueName:             m.QueueName,
		ScheduleID:            m.ScheduleID,
		CallerIP:              m.CallerIP,
		Labels:                m.Labels,
		FlowControlKey:        m.FlowControlKey,
		Parallelism:           m.FlowControlParallelism,
		Rate:                  m.FlowControlRate,
		Period:                int64(m.FlowControlPeriod / time.Second),
	}
	w.Body, w.BodyBase64 = SplitBody(m.Body)
	if len(m.Labels) > 0 {
		w.Label = m.Labels[0]
	}
	return w
}

// NewDLQMessage converts a dead-letter entry to its wire form.
func NewDLQMessage(e *ferry.DLQEntry) DLQMessage {
	w := DLQMessage{
		Message:        NewMessage(e.Message),
		DLQID:          e.ID,
		ResponseStatus: e.ResponseStatus,
		ResponseHeader: nonEmpty(e.ResponseHeader),
		Error:          e.Error,
	}
	w.ResponseBody, w.ResponseBodyBase64 = SplitBody(e.ResponseBody)
	return w
}

// NewEvent converts an event to its wire form, with the fields of its
// message when the message is still stored.
func NewEvent(e *ferry.Event) Event {
	w := Event{
		Time:            e.Time.UnixMilli(),
		MessageID:       e.MessageID,
		State:           string(e.State),
		URL:             e.URL,
		Error:           e.Error,
		ResponseStatus:  e.ResponseStatus,
		ResponseHeaders: nonEmpty(e.ResponseHeader),
		ResponseHeader:  nonEmpty(e.ResponseHeader),
		Retried:         e.Retried,
	}
	if !e.NextDeliveryTime.IsZero() {
		w.NextDeliveryTime = e.NextDeliveryTime.UnixMilli()
	}
	if len(e.ResponseBody) > 0 {
		w.ResponseBody = base64.StdEncoding.EncodeToString(e.ResponseBody)
	}
	if m := e.Message; m != nil {
		w.TopicName = m.TopicName
		w.EndpointName = m.EndpointName
		w.QueueName = m.QueueName
		w.ScheduleID = m.ScheduleID
		w.Header = nonEmpty(m.Header)
		if len(m.Body) > 0 {
			w.Body = base64.StdEncoding.EncodeToString(m.Body)
		}
		w.Timeout = m.Timeout.Milliseconds()
		w.Method = m.Method
		w.Callback = m.Callback
		w.FailureCallback = m.FailureCallback
		w.CallbackHeaders = nonEmpty(m.CallbackHeader)
		w.FailureCallbackHeaders = nonEmpty(m.FailureCallbackHeader)
		w.MaxRetries = m.MaxRetries
		w.RetryDelayExpression = m.RetryDelayExpr
		w.RetryDelayExpr = m.RetryDelayExpr
		w.CallerIP = m.CallerIP
		w.Labels = m.Labels
		if len(m.Labels) > 0 {
			w.Label = m.Labels[0]
		}
		w.FlowControlKey = m.FlowControlKey
		w.Parallelism = m.FlowControlParallelism
		w.Rate = m.FlowControlRate
		w.Period = int64(m.FlowControlPeriod / time.Second)
	}
	return w
}

// SplitBody returns body as text when it is valid UTF-8, and as standard
// base64 otherwise. An empty body yields two empty strings.
func SplitBody(body []byte) (text, b64 string) {
	if len(body) == 0 {
		return "", ""
	}
	if utf8.Valid(body) {
		return string(body), ""
	}
	return "", base64.StdEncoding.EncodeToString(body)
}

func nonEmpty(h http.Header) http.Header {
	if len(h) == 0 {
		return nil
	}
	return h
}
