/* The C floor for signing: HMAC-SHA1 alone over the Subscribe base string
 * (what any implementation must at least do per header). Prints ops/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

/* HMAC from a digest fetched once and a reused context: the fastest plain
 * OpenSSL 3 way for short messages. */
static void hmac_sha1(const EVP_MD *md, EVP_MD_CTX *ctx, const char *key, size_t kl,
                      const char *msg, size_t ml, unsigned char *out) {
    unsigned char kb[64] = {0}, pad[64], inner[64];
    unsigned int il, ol, i;
    memcpy(kb, key, kl > 64 ? 64 : kl);
    for (i = 0; i < 64; i++) pad[i] = kb[i] ^ 0x36;
    EVP_DigestInit_ex(ctx, md, NULL);
    EVP_DigestUpdate(ctx, pad, 64);
    EVP_DigestUpdate(ctx, msg, ml);
    EVP_DigestFinal_ex(ctx, inner, &il);
    for (i = 0; i < 64; i++) pad[i] = kb[i] ^ 0x5c;
    EVP_DigestInit_ex(ctx, md, NULL);
    EVP_DigestUpdate(ctx, pad, 64);
    EVP_DigestUpdate(ctx, inner, il);
    EVP_DigestFinal_ex(ctx, out, &ol);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *base = "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Faccount_activity%2Fwebhooks%2F1234567890%2Fsubscriptions%2Fall.json&oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0";
    const char *key = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw&LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
    double seconds = argc > 1 ? atof(argv[1]) : 2, t0, el;
    unsigned char out[64];
    long n = 0, i;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA1", NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    t0 = now();
    do {
        for (i = 0; i < 1000; i++)
            hmac_sha1(md, ctx, key, strlen(key), base, strlen(base), out);
        n += 1000;
        el = now() - t0;
    } while (el < seconds);
    printf("%.1f\n", n / el);
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    return 0;
}
