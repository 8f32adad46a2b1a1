package signature

import (
	"crypto/rand"
	"fmt"
)

// base58Alphabet is the Bitcoin base58 alphabet, which leaves out 0, O, I
// and l because they are easy to confuse.
const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

const (
	keyPrefix = "sig_"

	// keyRandomLength makes a key 32 bytes long in total. The 28 base58
	// characters carry about 164 bits of entropy.
	keyRandomLength = 28
)

// NewKey generates a signing key: "sig_" followed by 28 characters drawn
// uniformly from the base58 alphabet with crypto/rand.
func NewKey() (string, error) {
	random, err := randomBase58(keyRandomLength)
	if err != nil {
		return "", err
	}
	return keyPrefix + random, nil
}

// randomBase58 returns n characters drawn uniformly from base58Alphabet.
func randomBase58(n int) (string, error) {
	// 232 is the largest multiple of 58 that fits in a byte. Bytes at or
	// above it are discarded, so byte % 58 has no modulo bias.
	const limit = 256 - 256%len(base58Alphabet)

	out := make([]byte, 0, n)
	buf := make([]byte, n+n/8+4)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("signature: read random bytes: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, base58Alphabet[int(b)%len(base58Alphabet)])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}
