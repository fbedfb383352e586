"""python3-oauthlib signing the "Subscribe" request of bench/sign.lua; prints headers/s."""
import sys
import time

from oauthlib.oauth1 import Client

client = Client("xvz1evFS4wEEPTGEFPHBog", client_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
                resource_owner_key="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
                resource_owner_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE")
URL = "https://api.twitter.com/1.1/account_activity/webhooks/1234567890/subscriptions/all.json"
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2
for _ in range(500):
    client.sign(URL, http_method="POST")
n, t0 = 0, time.perf_counter()
while True:
    for _ in range(500):
        client.sign(URL, http_method="POST")
    n += 500
    el = time.perf_counter() - t0
    if el >= seconds:
        break
print("%.1f" % (n / el))
