package dispatch

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/wire"
)

// callbacks returns the callback messages that report the attempt res of m:
// the callback after every attempt, and the failure callback after the
// final failure (dlqID set).
func callbacks(m *ferry.Message, res *result, dlqID string, now time.Time) []*ferry.Message {
	var out []*ferry.Message
	if m.Callback != "" {
		out = append(out, publish.NewCallback(m, false, callbackBody(m, res, ""), now))
	}
	if dlqID != "" && m.FailureCallback != "" {
		out = append(out, publish.NewCallback(m, true, callbackBody(m, res, dlqID), now))
	}
	return out
}

// callbackBody returns the JSON that a callback receives. An attempt that
// got no HTTP response reports status 0, an empty body and the error.
func callbackBody(m *ferry.Message, res *result, dlqID string) []byte {
	header := res.header
	if header == nil {
		header = http.Header{}
	}
	source := m.Header
	if source == nil {
		source = http.Header{}
	}
	body := wire.CallbackBody{
		Status:          res.status,
		Header:          header,
		Body:            base64.StdEncoding.EncodeToString(res.body),
		Retried:         m.Retried,
		MaxRetries:      m.MaxRetries,
		SourceMessageID: m.ID,
		TopicName:       m.TopicName,
		EndpointName:    m.EndpointName,
		URL:             m.URL,
		Method:          m.Method,
		SourceHeader:    source,
		SourceBody:      base64.StdEncoding.EncodeToString(m.Body),
		NotBefore:       strconv.FormatInt(m.NotBefore.UnixMilli(), 10),
		CreatedAt:       strconv.FormatInt(m.CreatedAt.UnixMilli(), 10),
		ScheduleID:      m.ScheduleID,
		CallerIP:        m.CallerIP,
		DLQID:           dlqID,
	}
	if res.err != nil {
		body.Error = res.err.Error()
	}
	b, err := json.Marshal(body)
	if err != nil {
		// Every field is a string, number or header map.
		panic("marshal callback body: " + err.Error())
	}
	return b
}
