// Package signature creates and checks the signing keys and the
// Upstash-Signature tokens that Ferry attaches to every delivery.
//
// A token is a compact JWS signed with HMAC-SHA256 (alg "HS256"). The HMAC
// key is the UTF-8 bytes of the whole signing key string, "sig_" prefix
// included, which is how the official QStash receivers use the keys. The
// claims are:
//
//	iss   "Upstash"
//	sub   the delivery URL, byte for byte
//	iat   signing time in integer Unix seconds
//	exp   iat + 300
//	nbf   0
//	jti   "jwt_" followed by random base58 characters
//	body  base64url (RFC 4648 section 5, with "=" padding) of SHA-256 over the body
//
// Sign produces such tokens. Verifier checks them with the rules of the
// receivers in the official TypeScript (jose), Go (golang-jwt) and Python
// (PyJWT) SDKs, taking the strictest form of each rule. A token that Verifier
// accepts with zero Tolerance is therefore also accepted by those receivers
// at the same moment.
package signature
