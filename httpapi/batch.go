package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/wire"
)

// enqueuePrefix starts the path of an enqueue.
const enqueuePrefix = "/v2/enqueue/"

// handleEnqueue serves POST /v2/enqueue/{queue}/{destination}: a publish
// whose messages join the queue, which is created with parallelism 1 when
// it does not exist.
func (s *Server) handleEnqueue(w http.ResponseWriter, r *http.Request) {
	uri := requestTarget(r)
	path, _, _ := strings.Cut(uri, "?")
	segment, _, ok := strings.Cut(path[min(len(enqueuePrefix), len(path)):], "/")
	if !ok || segment == "" {
		s.writeError(w, r, ferry.Errorf(ferry.EINVALID,
			"a queue name and a destination must be provided: enqueue to /v2/enqueue/{queue}/https://your.app/path"))
		return
	}
	queue, err := parseGroupName("queue", segment)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	target, err := parseTarget(uri, path[:len(enqueuePrefix)+len(segment)+1])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	status, resp, err := s.accept(r.Context(), &acceptRequest{
		target: target, header: r.Header, body: body, queue: queue, callerIP: callerIP(r),
	}, s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, resp)
}

// parseGroupName unescapes a queue or URL group name from a path segment
// and validates it; kind names it in errors.
func parseGroupName(kind, segment string) (string, error) {
	name, err := url.PathUnescape(segment)
	if err != nil || !ferry.ValidGroupName(name) {
		return "", invalidGroupName(kind, segment)
	}
	return name, nil
}

func invalidGroupName(kind, name string) error {
	return ferry.Errorf(ferry.EINVALID, "invalid %s name %q: use 1 to %d letters, digits, hyphens, underscores and periods",
		kind, truncate(name), ferry.MaxGroupName)
}

// batchItem is one element of a batch as it is decoded. Fields are raw so
// that each item's type errors are reported in its own slot.
type batchItem struct {
	Destination json.RawMessage            `json:"destination"`
	Headers     map[string]json.RawMessage `json:"headers"`
	Body        json.RawMessage            `json:"body"`
	Queue       json.RawMessage            `json:"queue"`
}

// handleBatch serves POST /v2/batch: a JSON array of messages, each a
// publish or, with a queue, an enqueue. The response is an array in request
// order with an error object in the slot of each rejected item, and the
// other items are stored.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	data, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var items []json.RawMessage
	if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || trimmed[0] != '[' || json.Unmarshal(trimmed, &items) != nil {
		s.writeError(w, r, ferry.Errorf(ferry.EINVALID,
			`invalid batch body: expected a JSON array of messages such as [{"destination": "https://your.app/path", "body": "..."}]`))
		return
	}

	now := s.cfg.Now()
	results := make([]any, len(items))
	for i, raw := range items {
		req, err := parseBatchItem(raw, callerIP(r))
		if err == nil {
			var resp any
			_, resp, err = s.accept(r.Context(), req, now)
			results[i] = resp
		}
		if err != nil {
			if ferry.ErrorCode(err) == ferry.EINTERNAL {
				s.logger.Error("storing a batch item failed", "item", i, "error", err)
			}
			s.cfg.Metrics.requestFailed(ferry.ErrorCode(err))
			results[i] = wire.Error{Error: "item " + strconv.Itoa(i) + ": " + ferry.ErrorMessage(err)}
		}
	}
	writeJSON(w, http.StatusOK, results)
}

// parseBatchItem decodes one batch item into a request.
func parseBatchItem(raw json.RawMessage, caller string) (*acceptRequest, error) {
	var item batchItem
	if err := json.Unmarshal(raw, &item); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, ferry.Errorf(ferry.EINVALID, `invalid batch item: expected an object such as {"destination": "https://your.app/path"}`)
	}

	destination, err := optionalString("destination", item.Destination)
	if err != nil {
		return nil, err
	}
	if destination == "" {
		return nil, ferry.Errorf(ferry.EINVALID, `missing destination: set "destination" to a URL or a URL group name`)
	}
	target, err := parseTarget("/"+destination, "/")
	if err != nil {
		return nil, err
	}

	header := http.Header{}
	for name, value := range item.Headers {
		values, err := headerValues(name, value)
		if err != nil {
			return nil, err
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		header[key] = append(header[key], values...)
	}

	body, err := optionalString("body", item.Body)
	if err != nil {
		return nil, err
	}
	queue, err := optionalString("queue", item.Queue)
	if err != nil {
		return nil, err
	}
	if queue != "" && !ferry.ValidGroupName(queue) {
		return nil, invalidGroupName("queue", queue)
	}
	return &acceptRequest{target: target, header: header, body: []byte(body), queue: queue, callerIP: caller}, nil
}

// optionalString decodes a string field; a missing or null field is empty.
func optionalString(field string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", ferry.Errorf(ferry.EINVALID, "invalid %q in batch item: expected a string", field)
	}
	return v, nil
}

// headerValues decodes a header of a batch item: a string or an array of
// strings.
func headerValues(name string, raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err == nil {
		return many, nil
	}
	return nil, ferry.Errorf(ferry.EINVALID, "invalid header %q in batch item: expected a string or an array of strings", truncate(name))
}
