package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes that Ferry handles, from the PostgreSQL manual's
// appendix "PostgreSQL Error Codes".
const (
	codeUniqueViolation          = "23505"
	codeCharacterNotInRepertoire = "22021"
	codeUntranslatableCharacter  = "22P05"
	codeInvalidAuthorization     = "28000"
	codeInvalidPassword          = "28P01"
	codeInvalidCatalogName       = "3D000"
	codeInvalidSchemaName        = "3F000"
	codeUndefinedTable           = "42P01"
	codeInsufficientPrivilege    = "42501"
	codeTooManyConnections       = "53300"
	codeSerializationFailure     = "40001"
	codeDeadlockDetected         = "40P01"
)

// errorHints maps error codes to the action that fixes them.
var errorHints = map[string]string{
	codeCharacterNotInRepertoire: "text values must be valid UTF-8 without NUL bytes",
	codeUntranslatableCharacter:  "text values must be valid UTF-8 without NUL bytes",
	codeInvalidAuthorization:     "check the user and password in the DSN",
	codeInvalidPassword:          "check the user and password in the DSN",
	codeInvalidCatalogName:       "create the database (CREATE DATABASE name) or fix its name in the DSN",
	codeInvalidSchemaName:        "create the schema (CREATE SCHEMA name) or fix search_path in the DSN",
	codeUndefinedTable:           "the schema lacks Ferry's tables; check that search_path in the DSN names the schema Ferry migrated",
	codeInsufficientPrivilege:    "grant the DSN's user the privileges to create and change tables in the schema",
	codeTooManyConnections:       "lower Options.MaxConns (pool_max_conns) or raise max_connections on the server",
}

// wrapError prefixes err with the failed operation and, for error codes in
// errorHints, appends what to do next. The result wraps err, so callers can
// still inspect the *pgconn.PgError.
func wrapError(op string, err error) error {
	if hint, ok := errorHints[errorCode(err)]; ok {
		return fmt.Errorf("postgres: %s: %w; %s", op, err, hint)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// errorCode returns the SQLSTATE of a PostgreSQL error in err's chain, or
// "" when the server sent none.
func errorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// retryable reports whether PostgreSQL aborted the transaction in a way
// that running it again can fix.
func retryable(err error) bool {
	switch errorCode(err) {
	case codeSerializationFailure, codeDeadlockDetected:
		return true
	}
	return false
}
