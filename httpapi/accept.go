package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// target is the destination of a publish, an enqueue or a batch item: a
// URL, or the endpoints of a URL group.
type target struct {
	destination

	// Group is the URL group's name; URL is empty then.
	Group string

	// Query is the request's query without Ferry's parameters, which is
	// appended to each endpoint URL of a group.
	Query string
}

// parseTarget extracts the target from rawURI, the request URI of a route
// whose path is prefix followed by a URL or a URL group name.
func parseTarget(rawURI, prefix string) (*target, error) {
	path, query, _ := strings.Cut(rawURI, "?")
	if len(path) >= len(prefix) && strings.EqualFold(path[:len(prefix)], prefix) {
		if raw := path[len(prefix):]; isGroupName(raw) {
			kept, config := splitQuery(query)
			return &target{destination: destination{Config: config}, Group: raw, Query: kept}, nil
		}
	}
	dest, err := parseDestination(rawURI, prefix)
	if err != nil {
		return nil, err
	}
	return &target{destination: *dest}, nil
}

// isGroupName reports whether a destination names a URL group rather than
// a URL: it has no scheme, and only the characters of group names.
func isGroupName(raw string) bool {
	lower := strings.ToLower(raw)
	for _, scheme := range []string{"http://", "https://", "http%3a", "https%3a"} {
		if strings.HasPrefix(lower, scheme) {
			return false
		}
	}
	return urlGroupName.MatchString(raw)
}

// acceptRequest is one request to store messages: a publish, an enqueue
// or a batch item.
type acceptRequest struct {
	target *target
	header http.Header
	body   []byte

	// queue is the queue the messages are enqueued to, or empty.
	queue string

	callerIP string
}

// accept validates req, stores its messages and returns the status and
// body of the response: a publish response for a URL, and an array with one
// element per endpoint for a URL group.
func (s *Server) accept(ctx context.Context, req *acceptRequest, now time.Time) (int, any, error) {
	if req.queue != "" {
		if err := checkEnqueueSettings(publish.Source{Header: req.header, Query: req.target.Config}); err != nil {
			return 0, nil, err
		}
	}
	if req.target.Group != "" {
		return s.acceptGroup(ctx, req, now)
	}

	m, err := s.newMessage(req, &req.target.destination, now)
	if err != nil {
		return 0, nil, err
	}
	res, err := s.cfg.Store.MessageInsert(ctx, &store.MessageInsertParams{
		Message: m, DeduplicationWindow: s.cfg.DeduplicationWindow, Now: now,
	})
	if err != nil {
		return 0, nil, err
	}
	if res.Deduplicated {
		return http.StatusAccepted, wire.PublishResponse{MessageID: res.MessageID, Deduplicated: true}, nil
	}

	s.cfg.Metrics.published()
	// A delayed message may be due before the dispatcher's next planned
	// look, so it is woken for every publish.
	s.notify()
	return http.StatusOK, wire.PublishResponse{MessageID: res.MessageID}, nil
}

// acceptGroup stores one message per endpoint of the request's URL group,
// in one transaction.
func (s *Server) acceptGroup(ctx context.Context, req *acceptRequest, now time.Time) (int, any, error) {
	group, err := s.cfg.Store.URLGroupGet(ctx, req.target.Group)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, topicNotFound(req.target.Group)
	} else if err != nil {
		return 0, nil, err
	}

	params := make([]*store.MessageInsertParams, 0, len(group.Endpoints))
	for _, e := range group.Endpoints {
		dest := &destination{URL: appendQuery(e.URL, req.target.Query), Config: req.target.Config}
		m, err := s.newMessage(req, dest, now)
		if err != nil {
			return 0, nil, err
		}
		m.TopicName, m.EndpointName = group.Name, e.Name
		// One deduplication id covers the whole publish, so each
		// endpoint's message keeps its own reservation.
		if strings.HasPrefix(m.DeduplicationID, "id:") {
			m.DeduplicationID += "\n" + m.URL
		}
		params = append(params, &store.MessageInsertParams{
			Message: m, DeduplicationWindow: s.cfg.DeduplicationWindow, Now: now,
		})
	}

	results, err := s.cfg.Store.MessageInsertAll(ctx, params)
	if err != nil {
		return 0, nil, err
	}
	resp := make([]wire.PublishResponse, len(results))
	stored := false
	for i, res := range results {
		resp[i] = wire.PublishResponse{MessageID: res.MessageID, URL: params[i].Message.URL, Deduplicated: res.Deduplicated}
		if !res.Deduplicated {
			stored = true
			s.cfg.Metrics.published()
		}
	}
	if stored {
		s.notify()
	}
	return http.StatusOK, resp, nil
}

// newMessage builds the message of req for dest.
func (s *Server) newMessage(req *acceptRequest, dest *destination, now time.Time) (*ferry.Message, error) {
	m, err := s.buildMessageFrom(req.header, dest, req.body, req.callerIP, now)
	if err != nil {
		return nil, err
	}
	if err := publish.ApplyFlowControl(m, publish.Source{Header: req.header, Query: dest.Config}); err != nil {
		return nil, err
	}
	m.QueueName = req.queue
	return m, nil
}

// checkEnqueueSettings rejects the settings that a queue message cannot
// have: a delay would hold up every message behind it, and a queue's own
// parallelism takes the place of flow control.
func checkEnqueueSettings(src publish.Source) error {
	for _, name := range []string{"Upstash-Delay", "Upstash-Not-Before"} {
		if _, ok := src.Get(name); ok {
			return ferry.Errorf(ferry.EINVALID, "%s is not supported for queue messages: a queue starts each message "+
				"as soon as the one before it is done; publish to /v2/publish/ to delay a message", name)
		}
	}
	if publish.HasFlowControl(src) {
		return ferry.Errorf(ferry.EINVALID, "Upstash-Flow-Control-Key and Upstash-Flow-Control-Value are not supported "+
			"for queue messages: set the queue's parallelism with POST /v2/queues, or publish to /v2/publish/ with flow control")
	}
	return nil
}

// topicNotFound is the error for an unknown URL group, worded as QStash
// words it.
func topicNotFound(name string) error {
	return ferry.Errorf(ferry.ENOTFOUND, "topic %s not found", truncate(name))
}
