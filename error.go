package ferry

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in the API layer.
const (
	ECONFLICT     = "conflict"     // 409
	EINTERNAL     = "internal"     // 500
	EINVALID      = "invalid"      // 400
	ENOTFOUND     = "not_found"    // 404
	ETOOLARGE     = "too_large"    // 413
	EUNAUTHORIZED = "unauthorized" // 401
	EUNAVAILABLE  = "unavailable"  // 503

	// EUNPROCESSABLE is a well-formed request that conflicts with an
	// earlier one, such as an Idempotency-Key reused with another body.
	EUNPROCESSABLE = "unprocessable" // 422
)

// Error is an application error whose Message is safe to show to clients.
type Error struct {
	// Code is one of the E* constants.
	Code string

	// Message is the client-visible text.
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("ferry error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err when it is or wraps an *Error, and
// EINTERNAL otherwise. A nil err has no code.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-visible message of err. Errors that are
// not *Error get a generic message, so internal details never leak.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error; the server log has the details"
}
