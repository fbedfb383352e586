/* Bare libcurl: N sequential GETs on one reused easy handle (keep-alive),
 * body discarded into a counter. Prints requests/s. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <curl/curl.h>

static size_t sink(char *p, size_t s, size_t n, void *ud) {
    (void)p;
    *(size_t *)ud += s * n;
    return s * n;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *url = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 2000, i;
    size_t bytes = 0;
    double t0;
    CURL *e;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &bytes);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    for (i = 0; i < 50; i++) curl_easy_perform(e);
    t0 = now();
    for (i = 0; i < n; i++)
        if (curl_easy_perform(e) != CURLE_OK) return 1;
    printf("%.1f\n", n / (now() - t0));
    curl_easy_cleanup(e);
    return 0;
}
