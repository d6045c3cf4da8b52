//! `GET /`: one small chat page, served by the binary (no build step, no CDN). It streams
//! answers from `/v1/chat/completions`, folds the reasoning trace into a collapsible block,
//! and has a stop button, a new-chat button, the model's name and the tokens/s.

/// The page with the model's name filled in (HTML-escaped).
pub(crate) fn html(model: &str) -> String {
    let escaped: String = model
        .chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect();
    PAGE.replace("{{MODEL}}", &escaped)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>torchless · {{MODEL}}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;display:flex;flex-direction:column;height:100vh;background:#fafafa;color:#222}
header{padding:.6em 1em;background:#fff;border-bottom:1px solid #ddd;display:flex;gap:1em;align-items:center}
header b{flex:1} #stats{color:#666;font-size:.9em}
#log{flex:1;overflow:auto;padding:1em;max-width:50em;width:100%;box-sizing:border-box;margin:0 auto}
.msg{margin:.6em 0;padding:.6em .8em;border-radius:.6em;white-space:pre-wrap}
.user{background:#e3efff;margin-left:15%} .assistant{background:#fff;border:1px solid #e5e5e5;margin-right:15%}
details{color:#777;font-size:.92em;margin-bottom:.4em} summary{cursor:pointer}
form{display:flex;gap:.5em;padding:.8em;background:#fff;border-top:1px solid #ddd;max-width:50em;width:100%;box-sizing:border-box;margin:0 auto}
textarea{flex:1;font:inherit;padding:.5em;resize:none;height:3.2em}
button{font:inherit;padding:.4em 1em}
</style></head><body>
<header><b id="model">{{MODEL}}</b><span id="stats"></span><button id="new" type="button">New chat</button></header>
<div id="log"></div>
<form id="f"><textarea id="q" placeholder="Message (Enter to send, Shift+Enter for a new line)"></textarea>
<button id="send">Send</button><button id="stop" type="button" disabled>Stop</button></form>
<script>
const log=document.getElementById('log'),q=document.getElementById('q'),stats=document.getElementById('stats');
const send=document.getElementById('send'),stop=document.getElementById('stop');
let messages=[],ctl=null;
function bubble(role){const d=document.createElement('div');d.className='msg '+role;log.appendChild(d);return d;}
document.getElementById('new').onclick=()=>{if(ctl)ctl.abort();messages=[];log.innerHTML='';stats.textContent='';};
stop.onclick=()=>{if(ctl)ctl.abort();};
q.addEventListener('keydown',e=>{if(e.key==='Enter'&&!e.shiftKey){e.preventDefault();document.getElementById('f').requestSubmit();}});
document.getElementById('f').onsubmit=async e=>{
  e.preventDefault();const text=q.value.trim();if(!text||ctl)return;q.value='';
  bubble('user').textContent=text;messages.push({role:'user',content:text});
  const box=bubble('assistant');const det=document.createElement('details');const sum=document.createElement('summary');
  sum.textContent='Reasoning';det.appendChild(sum);const rs=document.createElement('div');det.appendChild(rs);
  const ans=document.createElement('div');ans.className='answer';box.appendChild(ans);
  let content='',reasoning='',n=0,t0=0;ctl=new AbortController();send.disabled=true;stop.disabled=false;
  try{
    const r=await fetch('/v1/chat/completions',{method:'POST',headers:{'Content-Type':'application/json'},signal:ctl.signal,
      body:JSON.stringify({messages,stream:true,stream_options:{include_usage:true}})});
    if(!r.ok){const j=await r.json().catch(()=>({}));ans.textContent='Error: '+((j.error&&j.error.message)||r.status);throw 0;}
    const rd=r.body.getReader(),dec=new TextDecoder();let buf='';
    for(;;){const {value,done}=await rd.read();if(done)break;buf+=dec.decode(value,{stream:true});
      let i;while((i=buf.indexOf('\n\n'))>=0){const line=buf.slice(0,i);buf=buf.slice(i+2);
        if(!line.startsWith('data: '))continue;const data=line.slice(6);if(data==='[DONE]')continue;
        const j=JSON.parse(data);if(j.error){ans.textContent+='\nError: '+j.error.message;continue;}
        const c=j.choices&&j.choices[0];if(!c||!c.delta)continue;
        if(c.delta.reasoning_content){if(!reasoning)box.insertBefore(det,ans);reasoning+=c.delta.reasoning_content;rs.textContent=reasoning;}
        if(c.delta.content){content+=c.delta.content;ans.textContent=content;}
        if(c.delta.content||c.delta.reasoning_content){if(!n)t0=performance.now();n++;
          const s=(performance.now()-t0)/1000;if(n>1&&s>0)stats.textContent=((n-1)/s).toFixed(1)+' tokens/s';}
        log.scrollTop=log.scrollHeight;}}
  }catch(err){if(err&&err.name==='AbortError')ans.textContent=content+' [stopped]';}
  messages.push({role:'assistant',content});ctl=null;send.disabled=false;stop.disabled=true;
};
</script></body></html>
"#;
