package signature

import (
	"strings"
	"testing"
)

func TestNewKeyFormat(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}

	if len(key) != 32 {
		t.Errorf("len(%q) = %d, want 32", key, len(key))
	}
	if !strings.HasPrefix(key, "sig_") {
		t.Errorf("key %q does not start with sig_", key)
	}
	for _, r := range strings.TrimPrefix(key, "sig_") {
		if !strings.ContainsRune(base58Alphabet, r) {
			t.Errorf("key %q contains %q, which is not in the base58 alphabet", key, r)
		}
	}
}

func TestNewKeyUnique(t *testing.T) {
	const count = 1000
	seen := make(map[string]bool, count)
	for range count {
		key, err := NewKey()
		if err != nil {
			t.Fatalf("NewKey: %v", err)
		}
		if seen[key] {
			t.Fatalf("NewKey returned %q twice", key)
		}
		seen[key] = true
	}
}

func TestRandomBase58CoversAlphabet(t *testing.T) {
	// 20000 draws miss a given character with probability below 1e-150, so
	// a missing character means the mapping never produces it.
	text, err := randomBase58(20000)
	if err != nil {
		t.Fatalf("randomBase58: %v", err)
	}

	if len(text) != 20000 {
		t.Errorf("len = %d, want 20000", len(text))
	}
	for _, r := range base58Alphabet {
		if !strings.ContainsRune(text, r) {
			t.Errorf("character %q never drawn", r)
		}
	}
	for _, r := range text {
		if !strings.ContainsRune(base58Alphabet, r) {
			t.Fatalf("drew %q, which is not in the base58 alphabet", r)
		}
	}
}
