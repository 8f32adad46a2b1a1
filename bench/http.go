package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// sink is an HTTP server on 127.0.0.1 that responds 200 to every request
// after calling worked with the sequence number in the request body. It is
// the no-op worker of the HTTP systems.
type sink struct {
	url string
	srv *http.Server
}

func startSink(worked func(seq int64)) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the sink on 127.0.0.1: %w", err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seq, err := readSeq(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		worked(seq)
		w.WriteHeader(http.StatusOK)
	})
	s := &sink{
		url: "http://" + ln.Addr().String() + "/hook",
		srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second},
	}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *sink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

// readSeq parses a request body that is a decimal sequence number.
func readSeq(body io.Reader) (int64, error) {
	data, err := io.ReadAll(io.LimitReader(body, 64))
	if err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	seq, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("body %q is not a sequence number", data)
	}
	return seq, nil
}

// newHTTPClient returns a client whose pool keeps conns connections to one
// host open.
func newHTTPClient(conns int) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = conns + 16
	transport.MaxIdleConnsPerHost = conns + 16
	transport.DisableCompression = true
	return &http.Client{Transport: transport, Timeout: 60 * time.Second}
}

// postSeq POSTs seq as the body to url and returns an error unless the
// response status is 200.
func postSeq(ctx context.Context, client *http.Client, url, token string, seq int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(strconv.AppendInt(nil, seq, 10)))
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s responded %d: %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	return nil
}
