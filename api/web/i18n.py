"""Labels in English (the default) and Simplified Chinese, chosen by the browser's Accept-Language.

The English text is the key; `ZH` maps it to Chinese. A label missing from `ZH`
shows in English, so adding a page never breaks the other language.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

LANGUAGES: Final = ("en", "zh")

ZH: Final[dict[str, str]] = {
    "Back office": "后台管理",
    "Log in": "登录",
    "Log out": "退出登录",
    "Username": "用户名",
    "Password": "密码",
    "Store": "门店",
    "This username is in several stores: which store?": "该用户名在多个门店中存在，请填写门店编号。",
    "Wrong username or password.": "用户名或密码错误。",
    "Too many failed logins. Try again in {seconds} s.": "登录失败次数过多，请在 {seconds} 秒后重试。",
    "The form expired; please try again.": "表单已过期，请重试。",
    "Dashboard": "仪表盘",
    "Sales": "销售报表",
    "Members": "会员分析",
    "Menu": "菜单管理",
    "Member program": "会员方案",
    "Campaigns": "优惠券活动",
    "Stored value": "储值负债",
    "Conflicts": "冲突处理",
    "Shifts": "班次与Z报表",
    "Projections": "投影状态",
    "Stores": "门店",
    "Today": "今日",
    "Net sales": "净销售额",
    "Orders": "订单数",
    "Average ticket": "客单价",
    "vs same weekday last week": "对比上周同日",
    "Last week": "上周同日",
    "Sales by hour": "分时销售",
    "Payment method mix": "支付方式占比",
    "Top items": "热销商品",
    "Item": "商品",
    "Items": "件数",
    "From": "开始日期",
    "To": "结束日期",
    "Group by": "分组",
    "Show": "查询",
    "Download CSV": "下载 CSV",
    "Key": "分组值",
    "Gross": "总额",
    "Discount": "折扣",
    "Net": "净额",
    "Refunds": "退款",
    "Totals": "合计",
    "day": "按日", "hour": "按小时", "item": "按商品", "category": "按分类", "method": "按支付方式",
    "terminal": "按终端", "channel": "按渠道",
    "Active members": "活跃会员",
    "New members": "新会员",
    "Returning members": "回头客",
    "Repurchase rate": "复购率",
    "New vs returning": "新客与回头客",
    "Segments": "用户画像",
    "Tiers": "会员等级",
    "Count": "人数",
    "SKU": "编号",
    "Name": "名称",
    "Price": "价格",
    "Category": "分类",
    "Available": "在售",
    "Sold out": "售罄",
    "Save": "保存",
    "Remove": "删除",
    "Add item": "添加商品",
    "Recharge bonus rules": "充值赠送规则",
    "Rule name": "规则名称",
    "Pay at least": "充值满",
    "Bonus": "赠送金额",
    "Bonus (basis points)": "赠送比例（万分比）",
    "Tier": "等级",
    "Lifetime points from": "累计积分达到",
    "Points": "积分",
    "Spend per point": "每积 1 分消费",
    "Point value": "每分抵扣",
    "Create campaign": "创建活动",
    "Campaign id": "活动编号",
    "Kind": "类型",
    "Valid from": "开始时间",
    "Valid until": "结束时间",
    "Quota": "发放总量",
    "Issue rule": "发放方式",
    "Threshold": "使用门槛",
    "Amount off": "减免金额",
    "Percent off (basis points)": "折扣（万分比）",
    "Issued": "已发放",
    "Redeemed": "已核销",
    "Status": "状态",
    "Active": "进行中",
    "Paused": "已暂停",
    "Pause": "暂停",
    "Resume": "恢复",
    "Claim QR": "领券二维码",
    "Print": "打印",
    "Results": "活动效果",
    "Outstanding principal": "未消费本金",
    "Outstanding bonus": "未消费赠送金",
    "Recharged": "充值",
    "Bonus granted": "赠送",
    "Spent": "消费",
    "Refunded": "退款",
    "Open conflicts": "待处理冲突",
    "Show resolved": "显示已处理",
    "Resolve": "处理",
    "Note": "备注",
    "No open conflicts.": "没有待处理的冲突。",
    "Amount": "金额",
    "Detected": "发现时间",
    "Resolved": "已处理",
    "Day": "日期",
    "Day Z report": "日结 Z 报表",
    "Shift": "班次",
    "Shift id": "班次编号",
    "Sales count": "销售笔数",
    "Tenders": "收款",
    "Cash expected": "应有现金",
    "Counted": "实点现金",
    "Difference": "差额",
    "Chain head": "哈希链头",
    "Open payments": "未完成支付",
    "Position": "位置",
    "Chain length": "链长度",
    "Lag": "延迟",
    "Error": "错误",
    "Report not available yet": "报表暂不可用",
    "Saved.": "已保存。",
    "You may not see this page.": "您无权查看此页面。",
    "Page not found.": "页面不存在。",
    "Choose a store": "选择门店",
    "Window": "时间范围",
    "Change": "变化",
    "none": "无",
    "Outstanding (total)": "未消费余额合计",
    "Recharges refunded": "充值退款",
    "Bonus voided": "作废赠送金",
    "Redemption rate": "核销率",
    "Revenue": "带动销售额",
    "Outstanding now": "当前余额",
    "In the window": "期间发生额",
    "Audit trail": "审计日志",
    "Latest entries": "最新记录",
    "Type": "类型",
    "Terminal": "终端",
    "At": "时间",
    "Data": "内容",
    "Hash": "哈希",
}


def language(accept_language: str) -> str:
    """The first supported language the browser asks for (q-values honoured); English otherwise."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            choices.append((-quality, index, primary))
    return min(choices)[2] if choices else "en"


def translator(lang: str) -> Callable[..., str]:
    def translate(text: str, **values: object) -> str:
        found = ZH.get(text, text) if lang == "zh" else text
        return found.format(**values) if values else found

    return translate
