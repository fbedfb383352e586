--- A ~2 KB tweet_create delivery (the shape of X's sample), for the benches.
local M = {}

M.SECRET = "bench-consumer-secret-0123456789abcdefghijklmnopqrstu"

function M.body(size)
  size = size or 2048
  local user = '{"id":2244994945,"id_str":"2244994945","name":"X Developers","screen_name":"XDevelopers",'
    .. '"location":"127.0.0.1","url":"https://developer.x.com","description":"The voice of the X Dev team",'
    .. '"protected":false,"verified":true,"followers_count":583218,"friends_count":1853,'
    .. '"listed_count":1461,"favourites_count":2543,"statuses_count":3765,'
    .. '"created_at":"Sat Dec 14 04:35:55 +0000 2013","profile_image_url_https":'
    .. '"https://pbs.twimg.com/profile_images/880136122604507136/xHrnqf1T_normal.jpg"}'
  local head = '{"for_user_id":"2244994945","user_has_blocked":"false","tweet_create_events":[{'
    .. '"created_at":"Wed Oct 10 20:19:24 +0000 2018","id":1050118621198921728,'
    .. '"id_str":"1050118621198921728","text":"To make room for more expression, we will now count '
    .. 'all emojis as equal \\u2014 including those with gender and skin tone modifiers.",'
    .. '"source":"<a href=\\"http://twitter.com\\" rel=\\"nofollow\\">Twitter Web Client</a>",'
    .. '"truncated":false,"in_reply_to_status_id":null,"in_reply_to_user_id":null,'
    .. '"user":' .. user .. ',"is_quote_status":false,"quote_count":0,"reply_count":0,'
    .. '"retweet_count":0,"favorite_count":0,"entities":{"hashtags":[],"urls":[],'
    .. '"user_mentions":[],"symbols":[]},"favorited":false,"retweeted":false,'
    .. '"filter_level":"low","lang":"en","timestamp_ms":"1539202764000","padding":"'
  local tail = '"}]}'
  local pad = size - #head - #tail
  if pad < 0 then pad = 0 end
  return head .. ("x"):rep(pad) .. tail
end

return M
