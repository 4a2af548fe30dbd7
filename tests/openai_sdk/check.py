"""Drives the OpenAI-compatible API with the official `openai` SDK and prints what it saw
as one JSON object (the Rust test `openai_api` asserts on it).

Environment: BASE_URL (the server), API_KEY (a live key), LIMITED_KEY (a key allowing one
request a minute).
"""
import json
import os

import openai

base = os.environ["BASE_URL"] + "/v1"
client = openai.OpenAI(base_url=base, api_key=os.environ["API_KEY"], max_retries=0, timeout=20)
seen = {"sdk_version": openai.__version__}

seen["models"] = sorted(m.id for m in client.models.list().data)

whole = client.chat.completions.create(
    model="companion/xiaoxi",
    messages=[{"role": "system", "content": "回答简短"}, {"role": "user", "content": "你好"}],
)
seen["whole"] = {
    "object": whole.object,
    "content": whole.choices[0].message.content,
    "role": whole.choices[0].message.role,
    "finish_reason": whole.choices[0].finish_reason,
    "total_tokens": whole.usage.total_tokens if whole.usage else None,
}

pieces, finish, usage = [], None, None
stream = client.chat.completions.create(
    model="companion/xiaoxi",
    messages=[{"role": "user", "content": "讲个笑话"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.total_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
seen["stream"] = {"pieces": pieces, "finish_reason": finish, "total_tokens": usage}


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"type": type(e).__name__, "status": e.status_code, "code": getattr(e, "code", None)}
    return None


bad = openai.OpenAI(base_url=base, api_key="sk-companion-" + "0" * 40, max_retries=0)
seen["bad_key"] = error_of(lambda: bad.models.list())
seen["unknown_model"] = error_of(
    lambda: client.chat.completions.create(model="companion/nobody", messages=[{"role": "user", "content": "hi"}])
)
seen["bad_request"] = error_of(
    lambda: client.chat.completions.create(model="companion/xiaoxi", messages=[{"role": "assistant", "content": "hi"}])
)
limited = openai.OpenAI(base_url=base, api_key=os.environ["LIMITED_KEY"], max_retries=0)
limited.models.list()  # models do not count
first = error_of(
    lambda: limited.chat.completions.create(model="companion/xiaoxi", messages=[{"role": "user", "content": "一"}])
)
seen["rate_limited"] = error_of(
    lambda: limited.chat.completions.create(model="companion/xiaoxi", messages=[{"role": "user", "content": "二"}])
)
seen["first_of_limited"] = first
print(json.dumps(seen, ensure_ascii=False))
