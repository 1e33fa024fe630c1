"""Static reference data of the demo world: categories, cities, audiences, sources, platforms, rhythm.

The organisation is a fictional online-education publisher ("知优学堂", ``zhiyou.example``) in
Asia/Shanghai: WeChat-first, with a web site, iOS and Android apps and a WeChat mini program.
"""

from __future__ import annotations

TIMEZONE = "Asia/Shanghai"
SITE = "https://www.zhiyou.example"
OFFICIAL_ACCOUNT = "zhiyou_official"

# key, label, share of interest, topics (used for titles, tags and search keywords)
CATEGORIES: list[tuple[str, str, float, list[str]]] = [
    ("programming", "编程开发", 0.20, ["Python", "Java", "Go", "前端", "算法", "Linux", "Docker"]),
    ("data", "数据分析", 0.18, ["Excel", "SQL", "Pandas", "统计学", "A/B测试", "Tableau", "用户画像"]),
    ("product", "产品运营", 0.12, ["产品经理", "用户增长", "精细化运营", "社群运营", "活动策划", "私域流量"]),
    ("design", "设计", 0.09, ["UI设计", "Figma", "PS", "插画", "品牌设计", "配色"]),
    ("english", "英语学习", 0.14, ["雅思", "托福", "四六级", "商务英语", "英语口语", "词汇"]),
    ("career", "职场成长", 0.12, ["简历", "面试", "职场沟通", "时间管理", "副业", "写作"]),
    ("finance", "理财", 0.09, ["基金", "理财入门", "个税", "记账", "保险", "指数投资"]),
    ("exam", "考试考证", 0.06, ["考研", "教资", "公务员", "CPA", "PMP", "软考"]),
]
CATEGORY_KEYS = [c[0] for c in CATEGORIES]
GENERIC_TAGS = ["入门", "进阶", "干货", "实战", "案例", "避坑", "工具", "方法论", "清单", "免费"]

# city, region (province), weight: a tier-1/new-tier-1 heavy audience, as online education has
CITIES: list[tuple[str, str, float]] = [
    ("Beijing", "Beijing", 11.0),
    ("Shanghai", "Shanghai", 10.0),
    ("Shenzhen", "Guangdong", 7.5),
    ("Guangzhou", "Guangdong", 6.5),
    ("Hangzhou", "Zhejiang", 5.5),
    ("Chengdu", "Sichuan", 5.5),
    ("Wuhan", "Hubei", 4.5),
    ("Nanjing", "Jiangsu", 4.0),
    ("Xi'an", "Shaanxi", 3.5),
    ("Chongqing", "Chongqing", 3.5),
    ("Suzhou", "Jiangsu", 3.0),
    ("Tianjin", "Tianjin", 2.8),
    ("Changsha", "Hunan", 2.8),
    ("Zhengzhou", "Henan", 2.6),
    ("Hefei", "Anhui", 2.2),
    ("Qingdao", "Shandong", 2.0),
    ("Xiamen", "Fujian", 1.6),
    ("Jinan", "Shandong", 1.6),
    ("Shenyang", "Liaoning", 1.5),
    ("Fuzhou", "Fujian", 1.4),
    ("Kunming", "Yunnan", 1.3),
    ("Dalian", "Liaoning", 1.2),
    ("Ningbo", "Zhejiang", 1.2),
    ("Dongguan", "Guangdong", 1.2),
    ("Harbin", "Heilongjiang", 1.0),
    ("Nanning", "Guangxi", 0.9),
    ("Shijiazhuang", "Hebei", 0.9),
    ("Taiyuan", "Shanxi", 0.7),
    ("Guiyang", "Guizhou", 0.7),
    ("Lanzhou", "Gansu", 0.5),
]

GENDERS: list[tuple[str, float]] = [("female", 0.51), ("male", 0.47), ("unknown", 0.02)]
AGE_GROUPS = ["<18", "18-24", "25-30", "31-35", "36-40", "41+"]
AGE_WEIGHTS = [0.04, 0.28, 0.32, 0.18, 0.11, 0.07]
AGE_WEIGHTS_YOUNG = [0.10, 0.52, 0.24, 0.09, 0.03, 0.02]  # Bilibili and Douyin audiences
AGE_BUY_FACTOR = [0.3, 0.7, 1.1, 1.3, 1.3, 1.1]

# promotion sensitivity (hidden; it shows in coupon behaviour): indifferent, neutral, sensitive, fanatic
SENSITIVITY_WEIGHTS = [0.25, 0.35, 0.30, 0.10]
COUPON_USE = [0.35, 0.75, 0.95, 1.0]
RECALL_REACTIVATE = [0.05, 0.14, 0.28, 0.33]

# acquisition sources of new visitors: weight, chance to register, buying factor
ACQUISITION: dict[str, tuple[float, float, float]] = {
    "wechat": (0.22, 0.24, 1.1),
    "wechat_share": (0.07, 0.22, 1.0),
    "miniprogram": (0.13, 0.26, 1.1),
    "weibo": (0.07, 0.12, 0.8),
    "douyin": (0.10, 0.12, 0.8),
    "bilibili": (0.08, 0.16, 0.45),
    "search": (0.12, 0.20, 1.1),
    "paid_search": (0.05, 0.20, 1.3),
    "zhihu": (0.04, 0.18, 1.0),
    "xiaohongshu": (0.03, 0.14, 0.9),
    "direct": (0.09, 0.22, 1.2),
}
SEARCH_ENGINES = [
    ("https://www.baidu.com/", 0.78),
    ("https://cn.bing.com/", 0.12),
    ("https://www.sogou.com/", 0.10),
]
MINI_SCENES = [("scene_1089", 0.35), ("scene_1001", 0.25), ("scene_1035", 0.2), ("scene_1007", 0.2)]
SHARE_CHANNELS = [("wechat_friend", 0.55), ("wechat_moments", 0.28), ("weibo", 0.08), ("copy_link", 0.09)]

# platforms: lib, and app versions released at a fraction of the window (the first one is older)
LIBS = {"web": "js", "ios": "iOS", "android": "Android", "mini": "MiniProgram", "server": "server"}
APP_RELEASES: list[tuple[str, float]] = [("4.2.1", -1.0), ("4.3.0", 0.15), ("4.4.0", 0.50), ("4.4.1", 0.58)]
MINI_RELEASES: list[tuple[str, float]] = [("2.6.3", -1.0), ("2.7.0", 0.30), ("2.8.0", 0.72)]

# local hour-of-day activity (Asia/Shanghai): commute, lunch and evening peaks; later weekend mornings
HOURS_WEEKDAY = [1.4, 0.7, 0.35, 0.25, 0.25, 0.45, 1.4, 3.4, 5.2, 4.8, 4.0, 4.2, 5.4, 5.0,
                 3.8, 3.8, 4.0, 4.2, 4.8, 5.8, 7.4, 8.4, 7.0, 3.8]  # fmt: skip
HOURS_WEEKEND = [2.4, 1.5, 0.8, 0.45, 0.35, 0.35, 0.6, 1.4, 2.9, 4.4, 5.4, 5.5, 5.0, 5.0,
                 5.4, 5.5, 5.2, 4.8, 4.8, 5.4, 6.9, 7.4, 6.4, 4.4]  # fmt: skip
WEEKEND_ACTIVITY = 0.8  # share of weekday sessions that happen on a Saturday or Sunday
