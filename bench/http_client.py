"""python's http.client: N sequential GETs over one keep-alive connection."""
import http.client
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(50):
    conn.request("GET", "/json")
    conn.getresponse().read()
t0 = time.perf_counter()
for _ in range(n):
    conn.request("GET", "/json")
    r = conn.getresponse()
    r.read()
print("%.1f" % (n / (time.perf_counter() - t0)))
