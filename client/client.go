// Package client is a Go client for Ferry's HTTP API. It covers the
// management routes of the QStash v2 API that the ferry CLI uses; request
// and response shapes come from package wire.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ferryhq/ferry/wire"
)

// Client talks to one Ferry server.
type Client struct {
	// BaseURL is the server's address, such as http://127.0.0.1:8080.
	BaseURL string

	// Token is sent as the bearer token.
	Token string

	// HTTPClient sends the requests. Defaults to a client with a 60 s
	// timeout.
	HTTPClient *http.Client
}

// New returns a client for baseURL with token.
func New(baseURL, token string) *Client {
	return &Client{
		BaseURL:    strings.TrimSuffix(baseURL, "/"),
		Token:      token,
		HTTPClient: &http.Client{Timeout: 60 * time.Second},
	}
}

// Error is an error response from the server.
type Error struct {
	// Status is the HTTP status code.
	Status int

	// Message is the server's error text.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Status, e.Message)
}

// IsNotFound reports whether err is a 404 response.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// rawBody is a request body that do sends unchanged, with the
// Content-Type of the header it is given.
type rawBody []byte

// do sends a request and decodes the JSON response into out, when out is
// not nil. A body other than rawBody is sent as JSON.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, header http.Header, out any) error {
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}

	var reader io.Reader
	raw, isRaw := body.(rawBody)
	switch {
	case isRaw:
		reader = bytes.NewReader(raw)
	case body != nil:
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, reader)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	if body != nil && !isRaw {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)

	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w; check --url (or FERRY_URL) and that the server is running", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}

	if resp.StatusCode >= 300 {
		var e wire.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.Error += "; check --token (or FERRY_TOKEN)"
		}
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// Filter selects messages, events or dead-letter entries. Values within a
// field are alternatives; fields combine with AND.
type Filter struct {
	MessageIDs       []string
	DLQIDs           []string
	States           []string
	URLs             []string
	TopicNames       []string
	QueueNames       []string
	ScheduleIDs      []string
	Labels           []string
	CallerIPs        []string
	FlowControlKeys  []string
	ResponseStatuses []string
	From, To         time.Time
}

func (f *Filter) query() url.Values {
	q := url.Values{}
	if f == nil {
		return q
	}
	add := func(name string, values []string) {
		for _, v := range values {
			q.Add(name, v)
		}
	}
	add("messageId", f.MessageIDs)
	add("dlqIds", f.DLQIDs)
	add("state", f.States)
	add("url", f.URLs)
	add("topicName", f.TopicNames)
	add("queueName", f.QueueNames)
	add("scheduleId", f.ScheduleIDs)
	add("label", f.Labels)
	add("callerIp", f.CallerIPs)
	add("flowControlKey", f.FlowControlKeys)
	add("responseStatus", f.ResponseStatuses)
	if !f.From.IsZero() {
		q.Set("fromDate", fmt.Sprint(f.From.UnixMilli()))
	}
	if !f.To.IsZero() {
		q.Set("toDate", fmt.Sprint(f.To.UnixMilli()))
	}
	return q
}

// MessageGet returns a message.
func (c *Client) MessageGet(ctx context.Context, id string) (*wire.Message, error) {
	var m wire.Message
	err := c.do(ctx, http.MethodGet, "/v2/messages/"+url.PathEscape(id), nil, nil, nil, &m)
	return &m, err
}

// MessageCancel cancels one message.
func (c *Client) MessageCancel(ctx context.Context, id string) (int, error) {
	var r wire.CancelResponse
	err := c.do(ctx, http.MethodDelete, "/v2/messages/"+url.PathEscape(id), nil, nil, nil, &r)
	return r.Cancelled, err
}

// MessagesCancel cancels the messages that f selects; a nil or empty
// filter cancels all waiting messages.
func (c *Client) MessagesCancel(ctx context.Context, f *Filter) (int, error) {
	var r wire.CancelResponse
	q := f.query()
	if ids := q["messageId"]; len(ids) > 0 {
		q.Del("messageId")
		q["messageIds"] = ids
	}
	err := c.do(ctx, http.MethodDelete, "/v2/messages", q, nil, nil, &r)
	return r.Cancelled, err
}

// DLQList returns one page of dead-letter entries after cursor.
func (c *Client) DLQList(ctx context.Context, f *Filter, cursor string, count int) (*wire.DLQListResponse, error) {
	q := f.query()
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if count > 0 {
		q.Set("count", fmt.Sprint(count))
	}
	var r wire.DLQListResponse
	err := c.do(ctx, http.MethodGet, "/v2/dlq", q, nil, nil, &r)
	return &r, err
}

// DLQGet returns one dead-letter entry.
func (c *Client) DLQGet(ctx context.Context, id string) (*wire.DLQMessage, error) {
	var m wire.DLQMessage
	err := c.do(ctx, http.MethodGet, "/v2/dlq/"+url.PathEscape(id), nil, nil, nil, &m)
	return &m, err
}

// DLQDelete deletes one dead-letter entry.
func (c *Client) DLQDelete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v2/dlq/"+url.PathEscape(id), nil, nil, nil, nil)
}

// DLQDeletePage deletes up to count entries that f selects, and returns
// the cursor to continue with, empty when done.
func (c *Client) DLQDeletePage(ctx context.Context, f *Filter, cursor string, count int) (*wire.DLQDeleteResponse, error) {
	q := f.query()
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if count > 0 {
		q.Set("count", fmt.Sprint(count))
	}
	var r wire.DLQDeleteResponse
	err := c.do(ctx, http.MethodDelete, "/v2/dlq", q, nil, nil, &r)
	return &r, err
}

// DLQRetry retries one dead-letter entry as a new message. Header may hold
// Upstash-* settings that override the original's.
func (c *Client) DLQRetry(ctx context.Context, id string, header http.Header) (*wire.PublishResponse, error) {
	var r wire.PublishResponse
	err := c.do(ctx, http.MethodPost, "/v2/dlq/retry/"+url.PathEscape(id), nil, nil, header, &r)
	return &r, err
}

// DLQRetryPage retries up to count entries that f selects.
func (c *Client) DLQRetryPage(ctx context.Context, f *Filter, cursor string, count int, header http.Header) (*wire.DLQRetryResponse, error) {
	q := f.query()
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if count > 0 {
		q.Set("count", fmt.Sprint(count))
	}
	var r wire.DLQRetryResponse
	err := c.do(ctx, http.MethodPost, "/v2/dlq/retry", q, nil, header, &r)
	return &r, err
}

// Events returns one page of events, newest first unless order is
// "earliestFirst".
func (c *Client) Events(ctx context.Context, f *Filter, cursor string, count int, order string) (*wire.EventsResponse, error) {
	q := f.query()
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if count > 0 {
		q.Set("count", fmt.Sprint(count))
	}
	if order != "" {
		q.Set("order", order)
	}
	var r wire.EventsResponse
	err := c.do(ctx, http.MethodGet, "/v2/events", q, nil, nil, &r)
	return &r, err
}

// Keys returns the signing keys.
func (c *Client) Keys(ctx context.Context) (*wire.Keys, error) {
	var k wire.Keys
	err := c.do(ctx, http.MethodGet, "/v2/keys", nil, nil, nil, &k)
	return &k, err
}

// KeysRotate makes the next key current and creates a new next key.
func (c *Client) KeysRotate(ctx context.Context) (*wire.Keys, error) {
	var k wire.Keys
	err := c.do(ctx, http.MethodPost, "/v2/keys/rotate", nil, nil, nil, &k)
	return &k, err
}
